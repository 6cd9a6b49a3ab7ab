//! What one tick of the collector reads: the node, each online service, each offline VM; and
//! what the collector is told to watch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use colo_config::agent::Selector;
use colo_policy::PsiSample;

use super::psi::PsiCounters;
use super::sli::SharedWindow;
use crate::host::cgroup::Hierarchies;

/// Stall time per second of each PSI line between two readings of the counters.
pub(super) fn psi_rates(a: &PsiCounters, b: &PsiCounters, dt_us: f64) -> PsiSample {
    let r = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt_us;
    PsiSample {
        cpu_some: r(a.cpu.some, b.cpu.some),
        memory_some: r(a.memory.some, b.memory.some),
        memory_full: r(a.memory.full, b.memory.full),
        io_some: r(a.io.some, b.io.some),
        io_full: r(a.io.full, b.io.full),
    }
}

/// The node in one tick.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeReadings {
    /// Time since the collector started.
    pub now: Duration,
    /// Length of the interval the rates cover, s.
    pub interval_s: f64,
    /// CPUs.
    pub cpu_capacity: f64,
    /// Busy CPU, cores.
    pub cpu_busy: f64,
    /// CPU stolen by the hypervisor, cores.
    pub cpu_steal: f64,
    /// CPU used by the offline group, cores.
    pub offline_cpu: f64,
    /// `MemTotal`.
    pub memory_total: u64,
    /// `MemTotal − MemAvailable`.
    pub memory_used: u64,
    /// System-wide PSI, if the kernel has it.
    pub psi: Option<PsiSample>,
}

/// One online service in one tick.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OnlineReadings {
    /// Index in agent.yaml `services`.
    pub service: u32,
    /// CPU used, cores.
    pub cpu: f64,
    /// Run-queue wait of its threads, s/s (`None` until its threads are found).
    pub run_delay: Option<f64>,
    /// Mean run-queue wait per time slice of its threads, seconds (`None` when none ran).
    pub wakeup_delay: Option<f64>,
    /// Its cgroup's PSI (v2).
    pub psi: Option<PsiSample>,
    /// Working-set memory, bytes.
    pub memory: u64,
    /// Mean latency of requests on its disks (the worst disk), when requests completed.
    pub io_latency: Option<Duration>,
    /// Busy share of its busiest disk.
    pub io_utilisation: Option<f64>,
    /// SLI p99 ÷ target.
    pub sli_ratio: Option<f64>,
    /// Threads followed.
    pub tasks: usize,
}

/// One offline VM (its counters may be up to `vm_refresh` old).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VmReadings {
    /// The caller's key for the VM.
    pub key: u64,
    /// CPU used (VMM included), cores.
    pub cpu: f64,
    /// Share of the interval its vCPUs were throttled (0–1).
    pub throttled: f64,
    /// Memory charged, bytes.
    pub memory: u64,
    /// Disk bytes per second.
    pub io_bytes_per_sec: u64,
    /// Disk operations per second.
    pub io_ops_per_sec: u64,
    /// Whether its cgroup counters could be read.
    pub seen: bool,
}

/// Everything one tick read.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// The node.
    pub node: NodeReadings,
    /// The online services, in agent.yaml order.
    pub online: Vec<OnlineReadings>,
    /// The VMs, in the order given to [`Collector::set_vms`].
    pub vms: Vec<VmReadings>,
}

/// An online service to watch.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Index in agent.yaml `services`.
    pub index: u32,
    /// Name (logs).
    pub name: String,
    /// How to find it.
    pub selector: Selector,
    /// SLO p99 target and the window its latencies arrive in.
    pub sli: Option<(Duration, SharedWindow)>,
}

/// An offline VM to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The caller's key.
    pub key: u64,
    /// The job id: its cgroup is `<offline>/<job>`.
    pub job: String,
}

/// How the collector finds things.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// The cgroup hierarchies.
    pub hierarchies: Hierarchies,
    /// The offline group, relative to the hierarchy roots (`<root>/offline`).
    pub offline: PathBuf,
    /// `/proc` (tests point elsewhere).
    pub proc_root: PathBuf,
    /// Read system-wide PSI.
    pub system_psi: bool,
    /// Read each service's cgroup PSI (v2 only).
    pub cgroup_psi: bool,
    /// Listings and memory refresh period.
    pub slow_every: Duration,
    /// Most age of a VM's counters.
    pub vm_refresh: Duration,
    /// Disk used for services that have done no IO of their own yet.
    pub default_disk: Option<(u32, u32)>,
    /// Fewest SLI samples in the window for a p99.
    pub sli_min_samples: usize,
}

impl CollectorSettings {
    /// Defaults for `hierarchies` and the offline group `offline`.
    pub fn new(hierarchies: Hierarchies, offline: PathBuf) -> Self {
        let v2 = hierarchies.is_v2();
        Self {
            hierarchies,
            offline,
            proc_root: PathBuf::from("/proc"),
            system_psi: true,
            cgroup_psi: v2,
            slow_every: Duration::from_millis(250),
            vm_refresh: Duration::from_secs(1),
            default_disk: super::node::disk_of(Path::new("/")),
            sli_min_samples: 5,
        }
    }
}
