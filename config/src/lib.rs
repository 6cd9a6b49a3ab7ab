//! colo's configuration: the typed schema of `agent.yaml` and of policy YAML
//! (`apiVersion: colo/v1`, `kind: Policy`), their loading and validation.

/// The policy API version this crate reads.
pub const POLICY_API_VERSION: &str = "colo/v1";
