//! One simulated node: its online demand, its offline VMs, and one step of time.
//!
//! A step evaluates the contention model, lets the node's [`Controller`] act on it, and — if it
//! changed a limit — evaluates again a tick later, up to a bound; the step's time is split
//! into these segments, each with its own outcome, for VM progress and for the metrics. Nothing
//! here allocates: VMs live in a vector sized once, events go to a buffer the caller owns.

use std::time::Duration;

use colo_policy::scoring::{
    self, Admission as Admit, InterferenceSignals, NodeState, PreparedInterference, Resources,
    ScoringParams,
};

use crate::calibration::Coefficients;
use crate::contention::{
    self, Capacity, Contention, GrantCache, GroupLimits, LoadMut, OnlineDemand, VmLoad,
};
use crate::controller::{ActionCounts, Admission, Controller, TickView};
use crate::trace::synthetic::{OnlineModel, OnlineNoise};
use crate::trace::{NodeSpec, OnlineSample, VmSpec};

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
    over_limit: bool,
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

/// What a node tells the scheduler after a step (the sim's `NodeReport`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Capacity, batch budget, batch usage and interference, as placement reads them.
    pub state: NodeState,
    /// Batch admission with hysteresis (the scheduler's per-node memory).
    pub admission: Admit,
    /// Free VM slots.
    pub free_slots: u16,
    /// False when the scheduler must not place batch VMs here at all.
    pub eligible: bool,
}

impl Report {
    /// Counts a VM with `request` as placed here, as [`Node::place`] does on the node's own
    /// report: the scheduler's copy stays right until the node reports again.
    pub fn reserve(&mut self, request: Resources) {
        self.state.offline_usage = self.state.offline_usage.saturating_add(request);
        self.free_slots = self.free_slots.saturating_sub(1);
    }
}

/// Per-step results of one node, summed by the caller (integers, so any summation order gives
/// the same bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepSample {
    /// Node CPU utilisation, permille, time-weighted over the step.
    pub utilisation_permille: u32,
    /// Modelled online p99, µs, time-weighted (0 on batch-pool nodes).
    pub p99_us: u32,
    /// Milliseconds of the step during which the modelled p99 was above the SLO.
    pub violation_ms: u32,
    /// Offline CPU delivered, millicore-seconds.
    pub offline_mcs: u64,
    /// Online CPU delivered, millicore-seconds.
    pub online_mcs: u64,
    /// Whether this node runs online services.
    pub online: bool,
    /// VMs on the node at the end of the step.
    pub vms: u32,
}

/// What the node needs to know about the run.
#[derive(Clone, Copy, Debug)]
pub struct StepContext<'a> {
    /// Contention model coefficients.
    pub coefficients: &'a Coefficients,
    /// Scoring tunables (headroom, interference, admission) for the report.
    scoring: &'a ScoringParams,
    /// `scoring.interference` prepared once (the report scores it at every step).
    interference: PreparedInterference,
    /// The online p99 target, ms.
    pub slo_p99_ms: f64,
    /// Seconds per step.
    pub step_secs: u32,
    /// Interval of the extra evaluations after a controller acts.
    pub tick: Duration,
    /// Most extra evaluations per step.
    pub max_ticks: u32,
}

impl<'a> StepContext<'a> {
    /// The context of a run with these coefficients, scoring tunables (whose interference
    /// parameters it prepares once), SLO, step, tick interval and bound on extra evaluations.
    #[must_use]
    pub fn new(
        coefficients: &'a Coefficients,
        scoring: &'a ScoringParams,
        slo_p99_ms: f64,
        step_secs: u32,
        tick: Duration,
        max_ticks: u32,
    ) -> Self {
        Self {
            coefficients,
            scoring,
            interference: PreparedInterference::new(&scoring.interference),
            slo_p99_ms,
            step_secs,
            tick,
            max_ticks,
        }
    }

    /// The scoring tunables.
    #[must_use]
    pub const fn scoring(&self) -> &'a ScoringParams {
        self.scoring
    }
}

/// One node.
#[derive(Debug)]
pub struct Node<S> {
    /// Index in the trace.
    pub index: u32,
    /// Hardware.
    pub spec: NodeSpec,
    /// The contention model's capacity.
    pub capacity: Capacity,
    /// Offline VMs on the node (changed only through [`Node::place`], removals and
    /// controllers, which keep `grants` valid).
    vms: Vec<Vm>,
    /// What the contention model keeps between evaluations of this node.
    grants: GrantCache,
    /// The offline group's limits.
    pub group: GroupLimits,
    /// The controller's state.
    pub control: S,
    /// Online noise state (synthetic traces).
    pub noise: OnlineNoise,
    /// What the node reported after its last step.
    pub report: Report,
    /// Batch requests of the VMs on it.
    pub requested: Resources,
    /// Memory of the VMs on it, bytes.
    pub offline_memory: u64,
    /// Capacity held back from batch (scoring headroom), fixed per node.
    headroom: Option<Resources>,
    /// The static reservation's batch budget, fixed per node.
    reserved: Option<Resources>,
}

impl<S> Node<S> {
    /// A node with no VMs.
    pub fn new<C: Controller<State = S>>(index: u32, spec: NodeSpec, ctrl: &C) -> Self {
        let capacity = spec.capacity();
        let cap = Resources::new(u64::from(spec.cpu_millicores), spec.memory_bytes);
        Self {
            index,
            spec,
            capacity,
            vms: Vec::with_capacity(MAX_VMS_PER_NODE),
            grants: GrantCache::default(),
            group: ctrl.initial_group(&spec),
            control: ctrl.init(&spec),
            noise: OnlineNoise::default(),
            report: Report {
                state: NodeState {
                    capacity: cap,
                    reclaimable: Resources::ZERO,
                    offline_usage: Resources::ZERO,
                    interference: 0.0,
                },
                admission: Admit::Accepting,
                free_slots: 0,
                eligible: false,
            },
            requested: Resources::ZERO,
            offline_memory: 0,
            headroom: None,
            reserved: None,
        }
    }

    /// Places `vm` on the node (the scheduler checked it fits). Returns false when the node has
    /// no free slot.
    pub fn place<C: Controller<State = S>>(&mut self, mut vm: Vm, ctrl: &C) -> bool {
        if self.vms.len() >= MAX_VMS_PER_NODE {
            return false;
        }
        ctrl.admit(&mut self.control, &mut vm);
        self.requested = self.requested.saturating_add(vm.spec.request());
        self.offline_memory = self.offline_memory.saturating_add(vm.load.memory_bytes);
        self.report.state.offline_usage = self.requested;
        self.report.free_slots = self.report.free_slots.saturating_sub(1);
        self.vms.push(vm);
        self.grants.invalidate();
        true
    }

    /// The offline VMs on the node.
    #[must_use]
    pub fn vms(&self) -> &[Vm] {
        &self.vms
    }

    fn remove(&mut self, i: usize) -> Vm {
        let vm = self.vms.swap_remove(i);
        self.grants.invalidate();
        self.requested = self.requested.saturating_sub(vm.spec.request());
        self.offline_memory = self.offline_memory.saturating_sub(vm.load.memory_bytes);
        vm
    }

    /// The online demand of this node at `step`: generated, or from the trace row.
    pub fn online_demand(
        &mut self,
        step: u32,
        model: Option<&OnlineModel>,
        row: &[OnlineSample],
    ) -> OnlineDemand {
        let sample = match model {
            Some(m) => m.sample(self.index, step, &mut self.noise),
            None => row.get(self.index as usize).copied().unwrap_or_default(),
        };
        sample.demand(&self.capacity)
    }

    /// Runs one step: OOM kills, control ticks, VM progress, completions, the report.
    /// Ended VMs go to `ends`; returns the step's sample.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        clippy::too_many_arguments
    )]
    pub fn step<C: Controller<State = S>>(
        &mut self,
        ctrl: &C,
        cx: &StepContext<'_>,
        step: u32,
        online: &OnlineDemand,
        ends: &mut Vec<VmEnd>,
        counts: &mut ActionCounts,
    ) -> StepSample {
        let start_s = step.saturating_mul(cx.step_secs);
        let end_s = start_s.saturating_add(cx.step_secs);
        self.oom_kill(online, end_s, ends);

        let step_len = f64::from(cx.step_secs);
        let mut t = 0.0;
        let mut ticks = 0;
        let (mut util, mut p99, mut violation, mut off, mut on) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut final_c;
        loop {
            let c = contention::evaluate_cached(
                cx.coefficients,
                &self.capacity,
                online,
                &self.group,
                &mut self.vms,
                &mut self.grants,
            );
            let mut view = TickView {
                // The first evaluation (most steps have only one) starts on the second.
                now: if ticks == 0 {
                    Duration::from_secs(u64::from(start_s))
                } else {
                    Duration::from_secs(u64::from(start_s)) + Duration::from_nanos(to_u64(t * 1e9))
                },
                node: self.index,
                batch_pool: self.spec.batch_pool,
                capacity: &self.capacity,
                online,
                contention: &c,
                slo_p99_ms: cx.slo_p99_ms,
                vms: &mut self.vms,
                group: &mut self.group,
                vms_unchanged: self.grants.reused(),
            };
            counts.ticks += 1;
            let changed = ctrl.tick(&mut self.control, &mut view, counts);
            if changed {
                self.grants.invalidate();
            }
            // The tick's length only matters after a change (most steps have none).
            let tick = if changed {
                cx.tick.as_secs_f64().min(step_len)
            } else {
                step_len
            };
            let last = !changed || ticks >= cx.max_ticks || t + tick >= step_len;
            let seg = if last { step_len - t } else { tick };
            util += seg * (c.online_cpu + c.offline_cpu) * self.capacity.inv_cores();
            p99 += seg * c.p99_ms;
            if c.p99_ms > cx.slo_p99_ms && !self.spec.batch_pool {
                violation += seg;
            }
            off += seg * c.offline_cpu;
            on += seg * c.online_cpu;
            final_c = c;
            if last {
                // One pass for the common case: progress, limits, completion.
                self.finish(seg, end_s, ends);
                break;
            }
            for vm in &mut self.vms {
                vm.remaining_s -= vm.load.speed * seg as f32;
            }
            t += seg;
            ticks += 1;
            self.apply_limits(end_s, ends);
        }
        let signals = ctrl.signals(&self.control);
        self.write_report(cx, ctrl.admission(), online, &final_c, signals);
        // Rounded to nearest (values are non-negative; `as` saturates).
        let r32 = |x: f64| (x + 0.5) as u32;
        let r64 = |x: f64| to_u64(x + 0.5);
        let per_ms = 1000.0 / step_len;
        StepSample {
            utilisation_permille: r32(util * per_ms),
            p99_us: if self.spec.batch_pool {
                0
            } else {
                r32(p99 * per_ms)
            },
            violation_ms: r32(violation * 1000.0),
            offline_mcs: r64(off * 1000.0),
            online_mcs: r64(on * 1000.0),
            online: !self.spec.batch_pool,
            #[allow(clippy::cast_possible_truncation)]
            vms: self.vms.len() as u32,
        }
    }

    /// Kills offline VMs, largest memory first (offline VMs carry the highest
    /// `oom_score_adj`), while node memory is over capacity.
    fn oom_kill(&mut self, online: &OnlineDemand, at_s: u32, ends: &mut Vec<VmEnd>) {
        let mut used = online.memory_bytes.saturating_add(self.offline_memory);
        while used > self.capacity.memory_bytes && !self.vms.is_empty() {
            let mut big = 0;
            for (i, vm) in self.vms.iter().enumerate() {
                let b = &self.vms[big];
                if (vm.load.memory_bytes, std::cmp::Reverse(vm.id))
                    > (b.load.memory_bytes, std::cmp::Reverse(b.id))
                {
                    big = i;
                }
            }
            let vm = self.remove(big);
            used = used.saturating_sub(vm.load.memory_bytes);
            ends.push(VmEnd {
                vm,
                outcome: Outcome::OomKilled,
                at_s,
            });
        }
    }

    /// Evictions and memory limits below use take effect.
    fn apply_limits(&mut self, at_s: u32, ends: &mut Vec<VmEnd>) {
        let mut i = 0;
        while i < self.vms.len() {
            let vm = &self.vms[i];
            let outcome = if vm.evicted {
                Some(Outcome::Preempted)
            } else if vm.over_limit {
                Some(Outcome::OomKilled)
            } else {
                None
            };
            if let Some(outcome) = outcome {
                let vm = self.remove(i);
                ends.push(VmEnd { vm, outcome, at_s });
            } else {
                i += 1;
            }
        }
    }

    /// The last segment of a step: progress, then evictions, memory limits and completions.
    fn finish(&mut self, seg: f64, at_s: u32, ends: &mut Vec<VmEnd>) {
        let mut i = 0;
        while i < self.vms.len() {
            let vm = &mut self.vms[i];
            vm.remaining_s -= vm.load.speed * seg as f32;
            let outcome = if vm.evicted {
                Some(Outcome::Preempted)
            } else if vm.over_limit {
                Some(Outcome::OomKilled)
            } else if vm.remaining_s <= 1e-6 {
                Some(if vm.spec.fails {
                    Outcome::Failed
                } else {
                    Outcome::Finished
                })
            } else {
                None
            };
            if let Some(outcome) = outcome {
                let vm = self.remove(i);
                ends.push(VmEnd { vm, outcome, at_s });
            } else {
                i += 1;
            }
        }
    }

    /// The report colo's agent would send (in the baselines: what the scheduler is told).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn write_report(
        &mut self,
        cx: &StepContext<'_>,
        admission: Admission,
        online: &OnlineDemand,
        c: &Contention,
        signals: Option<InterferenceSignals>,
    ) {
        let p = cx.scoring;
        let capacity = self.report.state.capacity;
        let head = *self
            .headroom
            .get_or_insert_with(|| scoring::headroom(capacity, &p.headroom));
        let mut interference = 0.0;
        let (reclaimable, eligible) = if self.spec.batch_pool {
            (scoring::reclaimable(capacity, Resources::ZERO, head), true)
        } else {
            match admission {
                Admission::BatchPoolOnly => (Resources::ZERO, false),
                Admission::Static { cpu, memory } => (
                    *self.reserved.get_or_insert_with(|| {
                        Resources::new(
                            (capacity.cpu_millicores as f64 * cpu.clamp(0.0, 1.0)) as u64,
                            (capacity.memory_bytes as f64 * memory.clamp(0.0, 1.0)) as u64,
                        )
                    }),
                    true,
                ),
                Admission::Reported => {
                    let signals = signals.unwrap_or(InterferenceSignals {
                        run_delay_ms_per_s: c.run_delay * 1000.0,
                        psi_ms_per_s: c.psi.worst_some() * 1000.0,
                        sli_ratio: Some(c.p99_ms / cx.slo_p99_ms),
                    });
                    interference = cx.interference.score(&signals).score;
                    let used =
                        Resources::new(to_u64(c.online_cpu * 1000.0 + 0.5), online.memory_bytes);
                    (scoring::reclaimable(capacity, used, head), true)
                }
            }
        };
        self.report.state = NodeState {
            capacity,
            reclaimable,
            offline_usage: self.requested,
            interference,
        };
        self.report.admission =
            scoring::batch_admission(interference, self.report.admission, &p.admission);
        self.report.free_slots = (MAX_VMS_PER_NODE - self.vms.len()) as u16;
        self.report.eligible = eligible;
    }
}

/// `x as u64` for the simulator's amounts, which stay far below 2^63: through `i64`, one
/// conversion instruction and a fix-up instead of the dozen of a `u64` conversion on x86-64
/// without AVX-512. The same value as `x as u64` for every `x` below 2^63 (NaN and negative
/// numbers give 0 as well); 2^63 and above give `i64::MAX`.
#[inline]
#[must_use]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn to_u64(x: f64) -> u64 {
    let v = x as i64;
    if v < 0 { 0 } else { v as u64 }
}

impl LoadMut for Vm {
    fn load(&self) -> &VmLoad {
        &self.load
    }

    fn load_mut(&mut self) -> &mut VmLoad {
        &mut self.load
    }
}

/// Stages of [`prefetch_stage`].
pub const PREFETCH_STAGES: u32 = 5;

/// Asks the CPU to start loading part of node `i` of `nodes` into cache (nothing when there is
/// no such node): stage 0 its struct, stage 1 its VMs, stages 2 to 4 its controller's state
/// (parts 0 to 2 of [`Controller::prefetch`]). Nodes step one after another and each node's state is spread
/// over several allocations, so without this every node's round starts with a train of cache
/// misses; stage 0 a step before stage 1, since finding the vectors reads the struct.
#[inline]
pub fn prefetch_stage<C: Controller>(ctrl: &C, nodes: &[Node<C::State>], i: usize, stage: u32) {
    let Some(node) = nodes.get(i) else {
        return;
    };
    match stage {
        0 => prefetch_struct(node),
        1 => prefetch_lines(&node.vms),
        2 => ctrl.prefetch(&node.control, 0),
        3 => ctrl.prefetch(&node.control, 1),
        4 => ctrl.prefetch(&node.control, 2),
        _ => {}
    }
}

/// Prefetches every cache line of `item` itself (not what it points to); a hint that reads
/// nothing, so the caller need not have `item` in cache.
#[inline]
pub fn prefetch_struct<T>(item: &T) {
    prefetch_bytes(
        std::ptr::from_ref(item).cast::<u8>(),
        std::mem::size_of::<T>(),
    );
}

/// Prefetches every cache line of the elements of `items`.
#[inline]
pub fn prefetch_lines<T>(items: &[T]) {
    prefetch_bytes(items.as_ptr().cast::<u8>(), std::mem::size_of_val(items));
}

/// Prefetches the cache lines of `len` bytes from `p` (at most 8 KiB); a hint, so `p` may be
/// any address.
#[inline]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = p as usize & !63;
        let end = (p as usize).saturating_add(len.min(8192));
        let mut a = start;
        while a < end {
            // SAFETY: prefetching is a hint that never faults, whatever the address; these lie
            // within (or on the lines of) a live object.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(a as *const i8) };
            a += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::NoColocation;

    const GIB: u64 = 1 << 30;

    /// A controller for these tests: on its first tick it applies `act` to every VM; later
    /// ticks change nothing.
    struct Scripted {
        act: fn(&mut Vm),
    }

    impl Controller for Scripted {
        type State = bool;
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn admission(&self) -> Admission {
            Admission::Reported
        }
        fn init(&self, _: &NodeSpec) -> bool {
            false
        }
        fn initial_group(&self, _: &NodeSpec) -> GroupLimits {
            GroupLimits::default()
        }
        fn admit(&self, _: &mut bool, _: &mut Vm) {}
        fn tick(&self, done: &mut bool, view: &mut TickView<'_>, c: &mut ActionCounts) -> bool {
            if *done {
                return false;
            }
            *done = true;
            for vm in view.vms.iter_mut() {
                (self.act)(vm);
                c.pause += 1;
            }
            true
        }
    }

    fn spec(cores: u32, memory: u64) -> NodeSpec {
        NodeSpec {
            cpu_millicores: cores * 1000,
            memory_bytes: memory,
            disk_bytes_per_sec: 200_000_000,
            batch_pool: false,
        }
    }

    fn vm(id: u64, cpu_millicores: u32, memory_mib: u32) -> Vm {
        Vm::start(
            id,
            VmSpec {
                request_millicores: cpu_millicores,
                request_mib: memory_mib,
                vcpus: 2,
                cpu_millicores,
                memory_mib,
                work_s: 1_000,
                ..VmSpec::default()
            },
            0,
            0,
        )
    }

    fn step<C: Controller>(
        node: &mut Node<C::State>,
        ctrl: &C,
        online: OnlineDemand,
    ) -> (StepSample, Vec<VmEnd>, ActionCounts) {
        let k = Coefficients::default();
        let scoring = ScoringParams::default();
        let cx = StepContext::new(&k, &scoring, 0.5, 10, Duration::from_millis(100), 8);
        let mut ends = Vec::new();
        let mut counts = ActionCounts::default();
        let s = node.step(ctrl, &cx, 3, &online, &mut ends, &mut counts);
        (s, ends, counts)
    }

    #[test]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn to_u64_is_as_u64_below_two_to_the_63() {
        for x in [
            0.0,
            -0.0,
            0.49,
            0.5,
            1.999_999,
            -1.5,
            -1e300,
            f64::NAN,
            f64::NEG_INFINITY,
            4.5e15,
            9.2e18,
            (1u64 << 53) as f64,
        ] {
            assert_eq!(to_u64(x), x as u64, "{x}");
        }
        assert_eq!(to_u64(f64::INFINITY), i64::MAX as u64);
    }

    #[test]
    fn the_schedulers_copy_of_a_report_counts_a_placement_as_the_node_does() {
        let mut n = Node::new(0, spec(8, 32 * GIB), &NoColocation);
        let (_, _, _) = step(&mut n, &NoColocation, OnlineDemand::default());
        let mut copy = n.report;
        let v = vm(1, 1_500, 2048);
        copy.reserve(v.spec.request());
        assert!(n.place(v, &NoColocation));
        assert_eq!(copy, n.report);
    }

    #[test]
    fn node_memory_overflow_kills_the_largest_offline_vm() {
        let mut n = Node::new(0, spec(2, 8 * GIB), &NoColocation);
        assert!(n.place(vm(1, 500, 1024), &NoColocation));
        assert!(n.place(vm(2, 500, 2048), &NoColocation));
        let online = OnlineDemand {
            cpu: 0.3,
            memory_bytes: 6 * GIB,
            io_bytes_per_sec: 0.0,
        };
        let (_, ends, _) = step(&mut n, &NoColocation, online);
        assert_eq!(ends.len(), 1);
        assert_eq!((ends[0].vm.id, ends[0].outcome), (2, Outcome::OomKilled));
        assert_eq!(ends[0].at_s, 40);
        assert_eq!(n.offline_memory, 1 << 30);
    }

    #[test]
    fn a_squeeze_counts_only_the_time_before_it() {
        let ctrl = Scripted {
            act: |vm| vm.load.paused = true,
        };
        let mut n = Node::new(0, spec(2, 8 * GIB), &ctrl);
        n.place(vm(1, 2_000, 1024), &ctrl);
        let online = OnlineDemand {
            cpu: 0.3,
            memory_bytes: GIB,
            io_bytes_per_sec: 0.0,
        };
        let (s, ends, counts) = step(&mut n, &ctrl, online);
        assert!(ends.is_empty());
        assert_eq!(counts.pause, 1);
        // 100 ms beside a same-weight hog (3.85 ms), then 9.9 s alone (0.23 ms).
        assert_eq!(s.violation_ms, 100);
        assert_eq!(s.p99_us, 266, "(0.1 × 3850 + 9.9 × 230) / 10");
        assert!((n.vms[0].remaining_s - (1_000.0 - 0.1 * 0.85)).abs() < 1e-3);
        assert_eq!(std::mem::size_of::<Vm>(), 128);
        assert!(
            std::mem::offset_of!(Vm, over_limit) < 64,
            "hot fields in one line"
        );
    }

    #[test]
    fn evicted_and_over_limit_vms_leave_with_their_outcome() {
        let ctrl = Scripted {
            act: |vm| {
                if vm.id == 1 {
                    vm.evicted = true;
                } else {
                    vm.set_memory_limit(1 << 20);
                }
            },
        };
        let mut n = Node::new(0, spec(8, 32 * GIB), &ctrl);
        n.place(vm(1, 1_000, 1024), &ctrl);
        n.place(vm(2, 1_000, 1024), &ctrl);
        let (_, ends, _) = step(&mut n, &ctrl, OnlineDemand::default());
        let mut got: Vec<(u64, Outcome)> = ends.iter().map(|e| (e.vm.id, e.outcome)).collect();
        got.sort_by_key(|g| g.0);
        assert_eq!(got, [(1, Outcome::Preempted), (2, Outcome::OomKilled)]);
        assert!(n.vms.is_empty());
        assert_eq!(n.requested, Resources::ZERO);
        assert_eq!(n.report.free_slots as usize, MAX_VMS_PER_NODE);
    }

    #[test]
    fn finished_work_completes_and_reports_free_capacity() {
        let mut n = Node::new(0, spec(8, 32 * GIB), &NoColocation);
        let mut v = vm(1, 1_000, 1024);
        v.remaining_s = 5.0;
        n.place(v, &NoColocation);
        let (_, ends, _) = step(&mut n, &NoColocation, OnlineDemand::default());
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].outcome, Outcome::Finished);
        // Reported: capacity − online − 10 % headroom, nothing requested.
        assert_eq!(
            n.report.state.reclaimable.cpu_millicores, 0,
            "online node, no colocation"
        );
        assert!(!n.report.eligible);
    }
}
