//! One offline VM on a node: its load and limits, and how its attempt ends.

use crate::contention::{LoadMut, VmLoad};
use crate::trace::VmSpec;

/// Most VMs one node holds (the scheduler treats a full node as unfit, as kubelet's `maxPods`).
pub const MAX_VMS_PER_NODE: usize = 48;

/// One offline VM on a node. The fields every step reads come first and fill exactly one
/// cache line; the rest is read when the VM starts or ends.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct Vm {
    /// Demand, limits in force and grants (the contention model's view).
    pub load: VmLoad,
    /// Seconds of full-speed work left.
    pub remaining_s: f32,
    /// Set by a controller to evict it (the job is reported as preempted and retried).
    pub evicted: bool,
    /// Set whenever a limit or the run state changes (by placement or a controller), so a
    /// controller that mirrors them (colo's engine sample) rewrites only what moved.
    pub limits_dirty: bool,
    /// Its hard memory limit is below its memory: the kernel kills it.
    pub(crate) over_limit: bool,
    /// Memory cgroup limit in bytes (`u64::MAX`: none); set with [`Vm::set_memory_limit`].
    memory_limit: u64,
    /// Unique id of this attempt (a preempted VM retried elsewhere gets a new one).
    pub id: u64,
    /// What it is.
    pub spec: VmSpec,
    /// When this attempt was submitted, seconds since the trace start.
    pub submitted_s: u32,
    /// When it started on this node, seconds since the trace start.
    pub started_s: u32,
}

impl Vm {
    /// Its hard memory limit in bytes (`u64::MAX`: none).
    #[must_use]
    pub const fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Sets its hard memory limit; a limit below its memory kills it at the end of the tick.
    /// Returns whether the limit changed.
    pub fn set_memory_limit(&mut self, bytes: u64) -> bool {
        let changed = self.memory_limit != bytes;
        self.memory_limit = bytes;
        self.over_limit = bytes < self.load.memory_bytes;
        self.limits_dirty |= changed;
        changed
    }

    /// A new attempt of `spec`, starting at `now_s`.
    #[must_use]
    pub fn start(id: u64, spec: VmSpec, submitted_s: u32, now_s: u32) -> Self {
        Self {
            id,
            spec,
            submitted_s,
            started_s: now_s,
            #[allow(clippy::cast_precision_loss)]
            remaining_s: spec.work_s as f32,
            load: VmLoad::new(
                f64::from(spec.cpu_millicores) / 1000.0,
                f64::from(spec.io_kib_per_sec) * 1024.0,
                u64::from(spec.memory_mib) << 20,
                f64::from(spec.membw) / 255.0,
            ),
            memory_limit: u64::MAX,
            evicted: false,
            limits_dirty: true,
            over_limit: false,
        }
    }
}

/// How a VM's attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its work is done.
    Finished,
    /// The trace says it fails.
    Failed,
    /// Killed by the kernel: node memory ran out, or its hard memory limit was below its use.
    OomKilled,
    /// Evicted by the controller (reported as preempted; retried).
    Preempted,
}

/// A VM attempt that ended during a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VmEnd {
    /// The VM.
    pub vm: Vm,
    /// How.
    pub outcome: Outcome,
    /// When, seconds since the trace start.
    pub at_s: u32,
}

impl LoadMut for Vm {
    fn load(&self) -> &VmLoad {
        &self.load
    }

    fn load_mut(&mut self) -> &mut VmLoad {
        &mut self.load
    }
}
