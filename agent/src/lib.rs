//! colo's node agent. Four subsystems, imports pointing one way (`jobs` and `qos` each use
//! `host` alone, `serve` uses all three, the wiring everything):
//!
//! * [`host`]: the host kernel as the agent sees it — one cgroup hierarchy model detected once
//!   (honouring `cgroup.version`), the agent's subtree and its knobs, and kept-fd readers of
//!   kernel files and cgroup counters.
//! * [`jobs`]: [`jobs::JobManager`] admits jobs and runs one supervisor per live job, which
//!   starts the job's sandbox (a `colo-vmm` MicroVM, behind [`jobs::runtime::Sandbox`]) inside
//!   its cgroups, follows it, and records the outcome in the on-disk registry; after an agent
//!   restart it re-adopts running VMMs.
//! * [`qos`]: the QoS loop — monitors, the policy engine, the enforcer, the policy store, the SLI
//!   inbox, and the node report it builds every second.
//! * [`serve`]: the gRPC API (Unix socket, TCP with TLS), the reporter to colo-scheduler, the
//!   Koordinator view and the Prometheus metrics.
//! * The wiring: [`daemon`] ties them together with [`settings`] and [`notify`] (systemd), and
//!   the job manager serves the loop as its offline side ([`qos::OfflineJobs`]);
//!   [`check`] is `colo-agent --check`; `coloctl`, the CLI, is its own crate (`coloctl/`).

pub mod check;
pub mod daemon;
pub mod host;
pub mod jobs;
pub mod notify;
mod offline;
pub mod qos;
pub mod serve;
pub mod settings;

/// The agent's version, as reported to the scheduler.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
