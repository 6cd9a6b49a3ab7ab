//! The seam between a simulated node and whatever manages its offline side.
//!
//! Each mode of the comparison is a [`Controller`]: the baselines fix the offline side's
//! limits once (no colocation, static reservation), while colo's modes run the real
//! `colo_policy` engine on a sample of the node at every tick ([`crate::colo`]). The node model
//! calls [`Controller::tick`] after each evaluation of the contention model; when the
//! controller changes a limit, the node evaluates again a short tick later (the agent's loop
//! reacts within ~100 ms, far inside a 10 s step).

use std::time::Duration;

use crate::contention::{Capacity, Contention, GroupLimits, OnlineDemand};
use crate::trace::NodeSpec;
use crate::vm::Vm;

/// What a controller sees and may change on one node at one tick.
#[derive(Debug)]
pub struct TickView<'a> {
    /// Time since the start of the trace.
    pub now: Duration,
    /// Index of the node.
    pub node: u32,
    /// True on a dedicated batch-pool node (no online services).
    pub batch_pool: bool,
    /// Its capacity.
    pub capacity: &'a Capacity,
    /// The online services' demand now.
    pub online: &'a OnlineDemand,
    /// The contention model's outcome with the limits in force.
    pub contention: &'a Contention,
    /// SLO target of the online p99, ms.
    pub slo_p99_ms: f64,
    /// The offline VMs, whose limits (`load.vcpu_quota`, `load.low_weight`, `load.io_limit`,
    /// `load.paused`, [`Vm::set_memory_limit`]) and `evicted` flag the controller may set.
    pub vms: &'a mut [Vm],
    /// The offline group's limits.
    pub group: &'a mut GroupLimits,
    /// True when the VMs are the same as at this node's previous tick, with the same limits
    /// and the same grants (the contention model reused them, [`crate::contention::GrantCache`]):
    /// a controller that mirrors the VMs has nothing to rewrite.
    pub vms_unchanged: bool,
}

/// Counts of what controllers did (or, observing, would have done).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionCounts {
    /// Controller ticks (for colo: policy engine steps).
    pub ticks: u64,
    /// Offline group CPU quota changes.
    pub cpu_quota: u64,
    /// Per-VM vCPU quota changes.
    pub vcpu_quota: u64,
    /// SCHED_IDLE switches.
    pub sched_idle: u64,
    /// IO limit changes (per VM and group).
    pub io_limit: u64,
    /// Memory limit settings.
    pub memory_limit: u64,
    /// Pauses.
    pub pause: u64,
    /// Resumes.
    pub resume: u64,
    /// Evictions.
    pub evict: u64,
}

impl ActionCounts {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Self) {
        self.ticks += other.ticks;
        self.cpu_quota += other.cpu_quota;
        self.vcpu_quota += other.vcpu_quota;
        self.sched_idle += other.sched_idle;
        self.io_limit += other.io_limit;
        self.memory_limit += other.memory_limit;
        self.pause += other.pause;
        self.resume += other.resume;
        self.evict += other.evict;
    }

    /// Every action.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.cpu_quota
            + self.vcpu_quota
            + self.sched_idle
            + self.io_limit
            + self.memory_limit
            + self.pause
            + self.resume
            + self.evict
    }
}

/// Where batch VMs may go, as the cluster scheduler is told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admission {
    /// Only the dedicated batch pool takes batch work.
    BatchPoolOnly,
    /// Online nodes offer a fixed share of their capacity (and report no interference).
    Static {
        /// CPU share of each online node reserved for batch, 0..1.
        cpu: f64,
        /// Memory share reserved for batch, 0..1.
        memory: f64,
    },
    /// Online nodes report what colo's agent would: reclaimable capacity and an interference
    /// score (the real scoring code), so colo's scheduler filter and score steer placement.
    Reported,
}

/// A mode's management of each node's offline side.
pub trait Controller: Sync {
    /// Per-node state (the policy engine's own state, buffers).
    type State: Send;

    /// Short name of the mode (tables, CSV, file names).
    fn name(&self) -> &'static str;

    /// How the scheduler learns what a node can take.
    fn admission(&self) -> Admission;

    /// State for a new node.
    fn init(&self, node: &NodeSpec) -> Self::State;

    /// Limits of the offline group when the node starts.
    fn initial_group(&self, node: &NodeSpec) -> GroupLimits;

    /// Called once when a VM lands on the node, before its first tick: the limits it starts
    /// with.
    fn admit(&self, state: &mut Self::State, vm: &mut Vm);

    /// One tick of the node's control loop. Returns true when it changed any limit, run state
    /// or `evicted` flag (the node then evaluates again shortly, and forgets the grants it
    /// keeps between evaluations: a controller that changes a VM must say so).
    fn tick(
        &self,
        state: &mut Self::State,
        view: &mut TickView<'_>,
        counts: &mut ActionCounts,
    ) -> bool;

    /// Starts loading the state of a node that will step soon into cache (nodes step one after
    /// another; their buffers sit in separate allocations). `part` 0, 1, ... in turn, a step
    /// apart, so a state in several buffers is prefetched a buffer at a time.
    fn prefetch(&self, _state: &Self::State, _part: u32) {}

    /// The interference signals the node reports to the scheduler, from what the controller
    /// saw at its last tick (colo's agent scores its engine's own sample); `None` lets the node
    /// derive them from the contention model.
    fn signals(&self, _state: &Self::State) -> Option<colo_policy::scoring::InterferenceSignals> {
        None
    }
}

/// No colocation: online nodes run online services only; batch VMs run on the dedicated batch
/// pool, unmanaged (nothing there to protect).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoColocation;

impl Controller for NoColocation {
    type State = ();

    fn name(&self) -> &'static str {
        "no-colocation"
    }

    fn admission(&self) -> Admission {
        Admission::BatchPoolOnly
    }

    fn init(&self, _: &NodeSpec) {}

    fn initial_group(&self, _: &NodeSpec) -> GroupLimits {
        GroupLimits::default()
    }

    fn admit(&self, (): &mut (), _: &mut Vm) {}

    fn tick(&self, (): &mut (), _: &mut TickView<'_>, _: &mut ActionCounts) -> bool {
        false
    }
}

/// Static reservation: each online node lends a fixed share of its CPU and memory to batch
/// VMs, which run in one low-weight cgroup with a fixed CPU quota: `cpu.shares=2` (v2
/// `cpu.weight=1`), `cpu.cfs_quota_us = share × cores × cfs_period_us`, `memory.limit_in_bytes
/// = share × memory`. Block IO gets `blkio.weight=10`, which the mq-deadline disk scheduler
/// ignores (it has no weights; only BFQ honours them), so offline IO is not limited. Nothing reacts to interference.
#[derive(Clone, Copy, Debug)]
pub struct StaticReservation {
    /// CPU share lent to batch, 0..1.
    pub cpu: f64,
    /// Memory share lent to batch, 0..1.
    pub memory: f64,
}

impl Default for StaticReservation {
    fn default() -> Self {
        Self {
            cpu: 0.25,
            memory: 0.25,
        }
    }
}

impl Controller for StaticReservation {
    type State = ();

    fn name(&self) -> &'static str {
        "static-reservation"
    }

    fn admission(&self) -> Admission {
        Admission::Static {
            cpu: self.cpu,
            memory: self.memory,
        }
    }

    fn init(&self, _: &NodeSpec) {}

    fn initial_group(&self, node: &NodeSpec) -> GroupLimits {
        if node.batch_pool {
            return GroupLimits::default();
        }
        GroupLimits {
            cpu_quota: node.capacity().cores * self.cpu.clamp(0.0, 1.0),
            io_limit: f64::INFINITY,
        }
    }

    fn admit(&self, (): &mut (), vm: &mut Vm) {
        vm.load.low_weight = true;
    }

    fn tick(&self, (): &mut (), _: &mut TickView<'_>, _: &mut ActionCounts) -> bool {
        false
    }
}
