//! `coloctl policy reload`: asks the agent to re-read its policy (like SIGHUP).

use colo_proto::agent as pb;

use super::connect::{ConnectArgs, connect};
use super::{CliError, Done, Output, outln, print_json};

/// Runs `coloctl policy reload`. A refused policy is an error (exit 3) naming the problem; the
/// agent keeps the old one.
pub async fn run(conn: &ConnectArgs, output: Output) -> Result<Done, CliError> {
    let mut client = connect(conn).await?;
    let r = client
        .reload_policy(pb::ReloadPolicyRequest {})
        .await?
        .into_inner();
    if output == Output::Json {
        print_json(&serde_json::json!({
            "applied": r.applied, "error": r.error, "policy_hash": r.policy_hash}))?;
    }
    if r.applied {
        if output == Output::Table {
            outln!("policy reloaded (hash {})", r.policy_hash)?;
        }
        Ok(Done::Ok)
    } else {
        Err(CliError::Local(format!(
            "the agent refused the new policy and keeps the old one (hash {}): {}",
            r.policy_hash, r.error
        )))
    }
}
