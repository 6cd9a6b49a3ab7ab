//! colo's node agent: job API, job manager, cgroup enforcement, monitors, reporter, metrics.
//!
//! * [`job::JobManager`] admits jobs and runs one supervisor task per live job, which starts its
//!   `colo-vmm` inside the job's cgroups ([`cgroup`], [`spawn`]), follows it, and records the
//!   outcome in the on-disk [`registry`]; after an agent restart it re-adopts running VMMs.
//! * [`api`] serves the gRPC API over a Unix socket (and TCP with TLS) through [`server`].
//! * [`daemon`] ties it together with [`metrics`], [`notify`] (systemd) and [`policy_store`].
//! * [`cli`] is `coloctl`; [`check`] is `colo-agent --check`.

pub mod check;
pub mod cli;
pub mod daemon;
pub mod host;
pub mod jobs;
pub mod notify;
pub mod qos;
pub mod serve;
pub mod settings;

/// The agent's version, as reported to the scheduler.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
