//! The committed JSON Schemas match the types.
//!
//! Regenerate after changing a type: `COLO_UPDATE_SCHEMA=1 cargo test -p colo-config --test schema`
//! (or `coloctl policy schema > config/schema/policy.schema.json`,
//! `coloctl policy schema --agent > config/schema/agent.schema.json`).

use std::path::PathBuf;

fn check(file: &str, generated: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(file);
    if std::env::var_os("COLO_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: run `COLO_UPDATE_SCHEMA=1 cargo test -p colo-config --test schema`",
        path.display()
    );
}

#[test]
fn policy_schema_is_up_to_date() {
    check("policy.schema.json", colo_config::schema::policy_schema());
}

#[test]
fn agent_schema_is_up_to_date() {
    check("agent.schema.json", colo_config::schema::agent_schema());
}

#[test]
fn the_schema_describes_units_and_refuses_unknown_fields() {
    let schema: serde_json::Value =
        serde_json::from_str(&colo_config::schema::policy_schema()).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let text = schema.to_string();
    assert!(
        text.contains("(ns|us|ms|s|m|h|d)"),
        "duration pattern missing"
    );
    assert!(text.contains("\"apiVersion\""));
}
