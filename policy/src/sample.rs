//! What the engine sees each tick: a [`NodeSample`], filled by the agent's monitors (or by the
//! simulator's model). All rates are over the interval since the previous sample.
//!
//! Fractions of time are plain `f64` seconds per second (`0.02` = 20 ms/s). A `NaN` reading is
//! treated as absent. The caller may reuse one `NodeSample` (clear the vectors, push again) so
//! that stepping allocates nothing.

use std::time::Duration;

use colo_config::policy::QosClassName;

/// Identifies an offline MicroVM (the agent's job id, as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VmId(pub u64);

impl std::fmt::Display for VmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vm-{}", self.0)
    }
}

/// Pressure stall information as stall time per second, from the deltas of the `total` counters
/// (not `avg10`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PsiSample {
    /// `cpu` `some`.
    pub cpu_some: f64,
    /// `memory` `some`.
    pub memory_some: f64,
    /// `memory` `full`.
    pub memory_full: f64,
    /// `io` `some`.
    pub io_some: f64,
    /// `io` `full`.
    pub io_full: f64,
}

/// The node as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeStats {
    /// CPU capacity in cores.
    pub cpu_capacity: f64,
    /// Busy CPU of the whole node in cores (0 if unknown: the online services' sum is used).
    pub cpu_usage: f64,
    /// CPU used by the offline group in cores.
    pub offline_cpu_usage: f64,
    /// The most CPU the node lends to offline work, in cores (`agent.yaml`
    /// `offline.budget.cpu`, or the capacity).
    pub offline_cpu_budget: f64,
    /// The offline group's CPU quota now in force (cores), `None` if unlimited. Read once, when
    /// the engine starts, so a restarted agent continues from the applied state.
    pub offline_cpu_quota: Option<f64>,
    /// Memory in bytes.
    pub memory_total: u64,
    /// Memory in use in bytes (total − available).
    pub memory_used: u64,
    /// System-wide PSI (used with `psi.scope: system`, or `auto` where a service has none).
    pub psi: Option<PsiSample>,
}

/// One online service.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OnlineSample {
    /// The service's index in `agent.yaml` `services` (named in reasons).
    pub service: u32,
    /// CPU used, in cores.
    pub cpu_usage: f64,
    /// Run-queue wait of its tasks summed, seconds per second (`/proc/<pid>/schedstat`).
    pub run_delay: Option<f64>,
    /// PSI of its cgroup (cgroup v2), `None` on v1.
    pub psi: Option<PsiSample>,
    /// Memory used, bytes.
    pub memory_usage: u64,
    /// Mean latency of its disk requests in the interval.
    pub io_latency: Option<Duration>,
    /// Busy share (0–1) of the disk it uses.
    pub io_utilisation: Option<f64>,
    /// Measured p99 latency ÷ SLO target, if it has an SLO and a measurement.
    pub sli_ratio: Option<f64>,
}

/// A token-bucket or throttle limit; `None` fields are unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoLimit {
    /// Bytes per second.
    pub bandwidth: Option<u64>,
    /// One-time burst in bytes (VM buckets only).
    pub bandwidth_burst: Option<u64>,
    /// Operations per second.
    pub iops: Option<u64>,
    /// One-time burst in operations (VM buckets only).
    pub iops_burst: Option<u64>,
}

/// Whether a VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmRunState {
    /// Its vCPUs run.
    #[default]
    Running,
    /// Its vCPUs are stopped.
    Paused,
}

/// The limits a VM has now (as applied), read when the engine first sees the VM so a restarted
/// agent continues from the applied state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VmLimits {
    /// vCPU quota in cores, `None` if unthrottled.
    pub vcpu_quota: Option<f64>,
    /// Whether its vCPU threads run under SCHED_IDLE.
    pub sched_idle: bool,
    /// Its disk token buckets.
    pub io: IoLimit,
    /// Its memory cgroup limit in bytes, `None` if unlimited.
    pub memory_limit: Option<u64>,
}

/// One offline MicroVM.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VmSample {
    /// Its id.
    pub id: VmId,
    /// Its QoS class.
    pub class: QosClassName,
    /// Job priority (higher is more important).
    pub priority: i32,
    /// When it started, on the same clock as [`NodeSample::now`].
    pub started_at: Duration,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory in bytes.
    pub guest_memory: u64,
    /// Memory charged to its cgroup (VMM included), bytes.
    pub memory_usage: u64,
    /// CPU used, cores.
    pub cpu_usage: f64,
    /// Share (0–1) of the interval its vCPUs were throttled.
    pub throttled: f64,
    /// Disk bytes per second (read + write).
    pub io_bytes_per_sec: u64,
    /// Disk operations per second.
    pub io_ops_per_sec: u64,
    /// Running or paused.
    pub state: VmRunState,
    /// Limits now in force.
    pub limits: VmLimits,
}

/// Everything the engine sees in one tick.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSample {
    /// Time of the sample on a monotonic clock the caller owns (the engine has none).
    pub now: Duration,
    /// The node.
    pub node: NodeStats,
    /// The online services.
    pub online: Vec<OnlineSample>,
    /// The offline VMs.
    pub vms: Vec<VmSample>,
}
