//! What the job side is told at start: binaries, size limits, timeouts and the node's offline
//! budget (from agent.yaml, see `settings.rs`).

use std::path::PathBuf;
use std::time::Duration;

use super::validate::SpecLimits;

/// The node's offline budget: what all admitted, unfinished jobs may reserve together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// CPU in millicores (one vCPU reserves 1000).
    pub cpu_millicores: u64,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
}

/// What the job manager needs to know.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The `colo-vmm` binary.
    pub vmm_binary: PathBuf,
    /// The workload guest ELF.
    pub workload_guest: PathBuf,
    /// Job size limits and defaults.
    pub limits: SpecLimits,
    /// Memory the VMM process needs beyond guest memory (added to the job's memory limit).
    pub memory_overhead_mib: u64,
    /// `pids.max` of a job.
    pub pids_per_job: u64,
    /// How long a VMM may take to report `started`.
    pub start_timeout: Duration,
    /// How long a VMM may take to end after `shutdown` before it is killed.
    pub stop_grace: Duration,
    /// Timeout of one control-socket request.
    pub control_timeout: Duration,
    /// The offline budget.
    pub budget: Budget,
    /// Stop every job (ending Preempted/AgentShutdown) when the agent shuts down.
    pub drain_on_shutdown: bool,
    /// Finished jobs are forgotten (record and logs removed) after this long...
    pub finished_retention: Duration,
    /// ...or when more than this many finished jobs are kept.
    pub max_finished: usize,
    /// Most bytes a job's serial console, VMM log and VMM output may each hold
    /// (`colo-vmm --log-limit`); also a container's console.
    pub log_limit: u64,
    /// The container sandbox, or why the node has none.
    pub containers: super::runtime::container::Availability,
    /// The ids jailed VMMs run as (`offline.jail`); `None`: VMMs keep the agent's rights.
    pub jail: Option<JailRange>,
    /// Linux guests that run a program, or why the node has none.
    pub linux: super::runtime::linux::Availability,
}

/// The uids (and gids) handed to jailed VMMs, one per unfinished job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JailRange {
    /// The first id.
    pub base: u32,
    /// How many.
    pub count: u32,
}

impl ManagerConfig {
    /// Defaults for everything but the binaries and the budget.
    pub fn new(vmm_binary: PathBuf, workload_guest: PathBuf, budget: Budget) -> Self {
        Self {
            vmm_binary,
            workload_guest,
            limits: SpecLimits::default(),
            memory_overhead_mib: 64,
            pids_per_job: 128,
            start_timeout: Duration::from_secs(20),
            stop_grace: Duration::from_secs(5),
            control_timeout: Duration::from_secs(3),
            budget,
            drain_on_shutdown: false,
            finished_retention: Duration::from_secs(24 * 3600),
            max_finished: 1000,
            log_limit: 16 << 20,
            containers: Err("not configured (offline.container)".into()),
            jail: None,
            linux: Err("not configured (offline.linux)".into()),
        }
    }
}
