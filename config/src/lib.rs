//! colo's configuration: the typed schema of `agent.yaml` and of policy YAML
//! (`apiVersion: colo/v1`, `kind: Policy`), their loading, merging and validation; and the
//! offline job spec ([`job`]) that job files, the agent and its registry share.
//!
//! ```
//! let policy = colo_config::parse_policy(&[colo_config::Source::new(
//!     "policy.yaml",
//!     "apiVersion: colo/v1\nkind: Policy\nmemory:\n  evict_at: 95%\n",
//! )])
//! .unwrap();
//! assert_eq!(policy.memory.evict_at.value(), 95.0);
//! assert_eq!(policy.memory.stop_at.value(), 85.0); // the default
//! ```
//!
//! Errors carry `FILE:LINE:COL`, the field path, the bad value and what is allowed:
//!
//! ```
//! let err = colo_config::parse_policy(&[colo_config::Source::new(
//!     "policy.yaml",
//!     "apiVersion: colo/v1\nkind: Policy\nmemory:\n  evict_at: 95 percent\n",
//! )])
//! .unwrap_err();
//! assert!(err.to_string().starts_with("policy.yaml:4:13: memory.evict_at: invalid percentage"));
//! ```
//!
//! The YAML parser (serde-saphyr) stays inside this crate: no YAML type is part of the API.

pub mod agent;
pub mod error;
pub mod job;
mod load;
pub mod policy;
pub mod schema;
pub mod suggest;
pub mod units;
mod yaml;

pub use agent::AgentConfig;
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use load::{
    MAX_DIR_FILES, MAX_FILE_BYTES, Source, load_agent, load_policy, parse_agent, parse_policy,
    policy_sources,
};
pub use policy::Policy;

/// The policy API version this crate reads.
pub const POLICY_API_VERSION: &str = "colo/v1";
