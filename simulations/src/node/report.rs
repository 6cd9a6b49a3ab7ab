//! What a node tells the scheduler after a step, and its per-step results.

use colo_policy::scoring::{self, Admission as Admit, InterferenceSignals, NodeState, Resources};

use super::{Node, StepContext};
use crate::contention::{Contention, OnlineDemand};
use crate::controller::Admission;
use crate::float::to_u64;
use crate::vm::MAX_VMS_PER_NODE;

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

impl<S> Node<S> {
    /// The report colo's agent would send (in the baselines: what the scheduler is told).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub(super) fn write_report(
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
