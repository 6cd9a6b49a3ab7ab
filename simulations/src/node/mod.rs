//! One simulated node: its online demand, its offline VMs, and one step of time.
//!
//! A step evaluates the contention model, lets the node's [`Controller`] act on it, and — if it
//! changed a limit — evaluates again a tick later, up to a bound; the step's time is split
//! into these segments, each with its own outcome, for VM progress and for the metrics. Nothing
//! here allocates: VMs live in a vector sized once, events go to a buffer the caller owns.

use std::time::Duration;

mod context;
mod report;

use colo_policy::scoring::{Admission as Admit, NodeState, Resources};

pub use context::StepContext;
pub use report::{Report, StepSample};

use crate::contention::{self, Capacity, GrantCache, GroupLimits, OnlineDemand};
use crate::controller::{ActionCounts, Controller, TickView};
use crate::float::to_u64;
use crate::prefetch::{prefetch_lines, prefetch_struct};
use crate::trace::synthetic::{OnlineModel, OnlineNoise};
use crate::trace::{NodeSpec, OnlineSample};
use crate::vm::{MAX_VMS_PER_NODE, Outcome, Vm, VmEnd};

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

#[cfg(test)]
mod tests;
