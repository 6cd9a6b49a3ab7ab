//! JSON Schemas generated from the types (`config/schema/*.schema.json`).

use crate::agent::AgentConfig;
use crate::policy::Policy;

/// The JSON Schema of a policy document, pretty-printed with a trailing newline.
pub fn policy_schema() -> String {
    let mut schema = schemars::schema_for!(Policy);
    // Every field has a default in the merged policy, but each file must carry the header.
    schema.insert(
        "required".to_owned(),
        serde_json::json!(["apiVersion", "kind"]),
    );
    render(schema)
}

/// The JSON Schema of `agent.yaml`, pretty-printed with a trailing newline.
pub fn agent_schema() -> String {
    render(schemars::schema_for!(AgentConfig))
}

fn render(schema: schemars::Schema) -> String {
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
