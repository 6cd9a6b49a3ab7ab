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
/// (not `avg10`). The one PSI type of colo: the agent's monitors measure it, the simulator's
/// contention model computes it, the engine reads it.
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

impl PsiSample {
    /// The worst `some` stall, s/s (`f64::max`: a `NaN` reading yields to the others).
    #[must_use]
    pub fn worst_some(&self) -> f64 {
        self.cpu_some.max(self.memory_some).max(self.io_some)
    }
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
    /// Mean run-queue wait per time slice of its tasks, seconds (run-queue wait ÷ slices run,
    /// `/proc/<pid>/schedstat`); `None` when its tasks were not scheduled in the interval.
    pub wakeup_delay: Option<f64>,
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
///
/// `repr(C)` with `id` and `state` first: the engine reads just these two of every VM at every
/// step, so they share a cache line.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct VmSample {
    /// Its id.
    pub id: VmId,
    /// Running or paused.
    pub state: VmRunState,
    /// Its QoS class.
    pub class: QosClassName,
    /// Job priority (higher is more important).
    pub priority: i32,
    /// vCPUs.
    pub vcpus: u32,
    /// When it started, on the same clock as [`NodeSample::now`].
    pub started_at: Duration,
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

impl NodeSample {
    /// The scoring module's inputs from this sample, so the agent's reports and the simulator
    /// score exactly what the engine saw: the worst online service's run delay, the worst PSI
    /// `some` stall (a service's own cgroup PSI where it has one, else the node's), and the
    /// worst SLI ratio. `NaN` and missing readings are skipped.
    pub fn interference_signals(&self) -> crate::scoring::InterferenceSignals {
        fn worst(acc: f64, v: f64) -> f64 {
            if v.is_finite() && v > acc { v } else { acc }
        }
        fn psi_some(p: &PsiSample) -> f64 {
            worst(worst(worst(0.0, p.cpu_some), p.memory_some), p.io_some)
        }
        let mut run_delay = 0.0;
        let mut psi = 0.0;
        let mut sli: Option<f64> = None;
        let mut node_psi = self.online.is_empty();
        for o in &self.online {
            run_delay = worst(run_delay, o.run_delay.unwrap_or(0.0));
            match &o.psi {
                Some(p) => psi = worst(psi, psi_some(p)),
                None => node_psi = true,
            }
            if let Some(r) = o.sli_ratio.filter(|r| r.is_finite()) {
                sli = Some(sli.map_or(r, |s: f64| s.max(r)));
            }
        }
        if node_psi && let Some(p) = &self.node.psi {
            psi = worst(psi, psi_some(p));
        }
        crate::scoring::InterferenceSignals {
            run_delay_ms_per_s: run_delay * 1e3,
            psi_ms_per_s: psi * 1e3,
            sli_ratio: sli,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interference_signals_take_the_worst_service_in_milliseconds_per_second() {
        let mut s = NodeSample::default();
        s.node.psi = Some(PsiSample {
            io_some: 0.3,
            ..Default::default()
        });
        s.online.push(OnlineSample {
            run_delay: Some(0.012),
            psi: Some(PsiSample {
                memory_some: 0.05,
                ..Default::default()
            }),
            sli_ratio: Some(0.9),
            ..Default::default()
        });
        s.online.push(OnlineSample {
            run_delay: Some(f64::NAN),
            sli_ratio: Some(1.3),
            ..Default::default()
        });
        let sig = s.interference_signals();
        assert!((sig.run_delay_ms_per_s - 12.0).abs() < 1e-9);
        // The second service has no cgroup PSI: the node's (300 ms/s) counts.
        assert!((sig.psi_ms_per_s - 300.0).abs() < 1e-9);
        assert_eq!(sig.sli_ratio, Some(1.3));
        assert_eq!(NodeSample::default().interference_signals().sli_ratio, None);
    }
}
