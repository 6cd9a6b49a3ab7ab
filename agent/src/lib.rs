//! colo's node agent: job API, job manager, cgroup enforcement, monitors, reporter, metrics.

pub mod cgroup;
pub mod cli;
pub mod procinfo;
pub mod spawn;

/// The agent's version, as reported to the scheduler.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod reporter;
