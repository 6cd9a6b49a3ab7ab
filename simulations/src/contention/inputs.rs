//! What the contention model reads and writes: a node's capacity, the online demand, each
//! VM's load (demand, limits, grants), the offline group's limits, and the outcome of a tick.

use colo_policy::PsiSample;

/// A node's fixed capacity (with the reciprocals the model multiplies by).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Capacity {
    /// Cores.
    pub cores: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk bandwidth in bytes per second.
    pub disk_bytes_per_sec: f64,
    pub(super) inv_cores: f64,
    pub(super) inv_memory: f64,
    pub(super) inv_disk: f64,
    memory_f64: f64,
}

impl Capacity {
    /// `1 / cores`.
    #[must_use]
    pub const fn inv_cores(&self) -> f64 {
        self.inv_cores
    }

    /// `memory_bytes as f64`, converted once (a `u64` conversion is several instructions).
    #[must_use]
    pub const fn memory_f64(&self) -> f64 {
        self.memory_f64
    }

    /// A capacity (zero or negative amounts count as tiny, never as a division by zero).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn new(cores: f64, memory_bytes: u64, disk_bytes_per_sec: f64) -> Self {
        Self {
            cores,
            memory_bytes,
            disk_bytes_per_sec,
            inv_cores: 1.0 / cores.max(1e-9),
            inv_memory: 1.0 / (memory_bytes.max(1) as f64),
            inv_disk: 1.0 / disk_bytes_per_sec.max(1.0),
            memory_f64: memory_bytes as f64,
        }
    }
}

/// What the online services ask for during a tick.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OnlineDemand {
    /// CPU in cores.
    pub cpu: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk traffic in bytes per second.
    pub io_bytes_per_sec: f64,
}

/// One offline VM as the model sees it: demand, limits in force, and (written by
/// [`evaluate`]) what it was granted. Stored as `f32` to keep VMs small (the simulator walks
/// millions of them per second); the model computes in `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct VmLoad {
    /// CPU the guest's work wants, cores.
    pub cpu_demand: f32,
    /// Disk traffic the guest's work wants at full speed, bytes per second.
    pub io_demand: f32,
    /// `1 / cpu_demand` (0 when there is no demand).
    pub(super) inv_cpu_demand: f32,
    /// `1 / io_demand` (0 when there is no demand).
    pub(super) inv_io_demand: f32,
    /// Memory charged to the VM, bytes.
    pub memory_bytes: u64,
    /// Memory-bandwidth intensity of its work, 0 (compute-bound) to 1 (streaming memory).
    pub membw: f32,
    /// vCPU quota in cores (`f32::INFINITY`: none; never negative).
    pub vcpu_quota: f32,
    /// Disk token bucket in bytes per second (`f32::INFINITY`: none; never negative).
    pub io_limit: f32,
    /// Granted CPU, cores (output).
    pub cpu: f32,
    /// Granted disk traffic, bytes per second (output).
    pub io: f32,
    /// Share of its demand withheld by quotas, 0..1 (output).
    pub throttled: f32,
    /// Speed of its work relative to running alone and unthrottled, 0..1 (output).
    pub speed: f32,
    /// vCPU threads at low weight (SCHED_IDLE, or a `cpu.shares=2` group).
    pub low_weight: bool,
    /// vCPUs stopped.
    pub paused: bool,
}

impl VmLoad {
    /// A running, unlimited VM with the given demand.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)]
    pub fn new(cpu_demand: f64, io_demand: f64, memory_bytes: u64, membw: f64) -> Self {
        // Sanitised once here, so the model needs no clamping per tick.
        let (c, i) = (cpu_demand.max(0.0) as f32, io_demand.max(0.0) as f32);
        Self {
            cpu_demand: c,
            io_demand: i,
            inv_cpu_demand: if c > 0.0 { 1.0 / c } else { 0.0 },
            inv_io_demand: if i > 0.0 { 1.0 / i } else { 0.0 },
            memory_bytes,
            membw: membw.clamp(0.0, 1.0) as f32,
            vcpu_quota: f32::INFINITY,
            io_limit: f32::INFINITY,
            cpu: 0.0,
            io: 0.0,
            throttled: 0.0,
            speed: 0.0,
            low_weight: false,
            paused: false,
        }
    }
}

/// Limits on the offline group as a whole.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupLimits {
    /// CPU quota in cores (`f64::INFINITY`: none).
    pub cpu_quota: f64,
    /// Disk throttle in bytes per second (`f64::INFINITY`: none).
    pub io_limit: f64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            cpu_quota: f64::INFINITY,
            io_limit: f64::INFINITY,
        }
    }
}

/// The outcome of one tick on one node.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Contention {
    /// CPU the online services got, cores.
    pub online_cpu: f64,
    /// CPU the offline VMs got, cores.
    pub offline_cpu: f64,
    /// Offline disk traffic granted, bytes per second.
    pub offline_io: f64,
    /// Memory in use (online + offline), bytes.
    pub memory_used: u64,
    /// Modelled online p99, ms.
    pub p99_ms: f64,
    /// The queueing part of `p99_ms`.
    pub p99_queue_ms: f64,
    /// The CPU-interference part of `p99_ms`.
    pub p99_cpu_ms: f64,
    /// The IO-interference part of `p99_ms`.
    pub p99_io_ms: f64,
    /// The memory part (bandwidth and reclaim) of `p99_ms`.
    pub p99_memory_ms: f64,
    /// Run-queue wait of the online tasks, summed, seconds per second.
    pub run_delay: f64,
    /// Online PSI.
    pub psi: PsiSample,
    /// Mean latency of the online service's disk requests, seconds.
    pub io_latency: f64,
    /// Busy share of the disk, 0..1.
    pub disk_utilisation: f64,
}

/// Access to the [`VmLoad`] of whatever holds one (so callers need not copy their VMs).
pub trait LoadMut {
    /// The load.
    fn load(&self) -> &VmLoad;
    /// The load, to write grants into.
    fn load_mut(&mut self) -> &mut VmLoad;
}

impl LoadMut for VmLoad {
    fn load(&self) -> &VmLoad {
        self
    }

    fn load_mut(&mut self) -> &mut VmLoad {
        self
    }
}
