//! What a run measures: integer accumulators (so summing in any order, on any number of
//! threads, gives the same bytes), bucketed over time for the plots, and the summary.

use crate::controller::ActionCounts;
use crate::node::StepSample;

/// Bins of the across-node p99 histogram: log-spaced from [`P99_LOW_US`] to ×2^(bins/8).
pub const P99_BINS: usize = 64;
/// Lower edge of the first p99 bin, µs.
pub const P99_LOW_US: f64 = 50.0;

/// The p99 bin of `us`: 8 bins per doubling above [`P99_LOW_US`] (`50 µs × 2^octave × (1 +
/// part/8)`). Integer arithmetic only (divisions by the constant 50 compile to a multiply): the
/// same bin as taking the octave and the position within it from the float `us / 50`, which
/// it replaces (a test compares the two), since `us / 50` is never close enough to a bin edge
/// for its rounding to matter (an edge is either hit exactly or missed by at least 1/200).
#[must_use]
pub fn p99_bin(us: u32) -> usize {
    const LOW: u64 = 50;
    const _: () = assert!(P99_LOW_US == 50.0);
    let us = u64::from(us);
    if us <= LOW {
        return 0;
    }
    let octave = (us / LOW).ilog2();
    // floor(8 × us / (50 × 2^octave)), 8..=15.
    let part = (8 * us / LOW) >> octave;
    (octave as usize * 8 + part as usize - 7).min(P99_BINS - 1)
}

/// Upper edge of bin `i`, ms.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn p99_bin_upper_ms(i: usize) -> f64 {
    if i == 0 {
        return P99_LOW_US / 1000.0;
    }
    let (octave, part) = ((i - 1) / 8, (i - 1) % 8);
    P99_LOW_US * 2f64.powi(octave as i32) * (1.0 + (part as f64 + 1.0) / 8.0) / 1000.0
}

/// Sums over the node-steps of one time bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Steps in the bucket.
    pub steps: u32,
    /// Node-steps.
    pub node_steps: u64,
    /// Sum of node CPU utilisation, permille.
    pub utilisation_permille: u64,
    /// Node-steps of online nodes.
    pub online_node_steps: u64,
    /// Sum of modelled online p99, µs.
    pub p99_us: u64,
    /// Histogram of the modelled online p99 across online node-steps.
    pub p99_hist: [u32; P99_BINS],
    /// Milliseconds of node time with the modelled p99 above the SLO.
    pub violation_ms: u64,
    /// Offline CPU delivered, millicore-seconds.
    pub offline_mcs: u64,
    /// Online CPU delivered, millicore-seconds.
    pub online_mcs: u64,
    /// VMs whose work finished.
    pub vms_finished: u64,
    /// Work of the VMs that finished, millicore-seconds (CPU demand × work seconds).
    pub work_done_mcs: u64,
    /// VMs summed over node-steps (÷ node-steps = mean VMs per node).
    pub vm_steps: u64,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            steps: 0,
            node_steps: 0,
            utilisation_permille: 0,
            online_node_steps: 0,
            p99_us: 0,
            p99_hist: [0; P99_BINS],
            violation_ms: 0,
            offline_mcs: 0,
            online_mcs: 0,
            vms_finished: 0,
            work_done_mcs: 0,
            vm_steps: 0,
        }
    }
}

impl Bucket {
    /// Adds one node-step.
    pub fn add_sample(&mut self, s: &StepSample) {
        self.node_steps += 1;
        self.utilisation_permille += u64::from(s.utilisation_permille);
        if s.online {
            self.online_node_steps += 1;
            self.p99_us += u64::from(s.p99_us);
            self.p99_hist[p99_bin(s.p99_us)] += 1;
        }
        self.violation_ms += u64::from(s.violation_ms);
        self.offline_mcs += s.offline_mcs;
        self.online_mcs += s.online_mcs;
        self.vm_steps += u64::from(s.vms);
    }

    /// Adds another bucket's sums (steps are not added: the caller counts steps).
    pub fn merge(&mut self, o: &Self) {
        self.node_steps += o.node_steps;
        self.utilisation_permille += o.utilisation_permille;
        self.online_node_steps += o.online_node_steps;
        self.p99_us += o.p99_us;
        for (a, b) in self.p99_hist.iter_mut().zip(o.p99_hist.iter()) {
            *a += b;
        }
        self.violation_ms += o.violation_ms;
        self.offline_mcs += o.offline_mcs;
        self.online_mcs += o.online_mcs;
        self.vms_finished += o.vms_finished;
        self.work_done_mcs += o.work_done_mcs;
        self.vm_steps += o.vm_steps;
    }

    /// Mean node CPU utilisation, percent.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn utilisation_pct(&self) -> f64 {
        if self.node_steps == 0 {
            0.0
        } else {
            self.utilisation_permille as f64 / self.node_steps as f64 / 10.0
        }
    }

    /// Mean modelled online p99 across online nodes, ms.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn p99_mean_ms(&self) -> f64 {
        if self.online_node_steps == 0 {
            0.0
        } else {
            self.p99_us as f64 / self.online_node_steps as f64 / 1000.0
        }
    }

    /// The `q` quantile (0..1) of the modelled online p99 across online node-steps, ms (upper
    /// edge of its bin).
    #[must_use]
    pub fn p99_quantile_ms(&self, q: f64) -> f64 {
        quantile_upper(&self.p99_hist, q).map_or(0.0, p99_bin_upper_ms)
    }
}

/// Index of the bin holding the `q` quantile of a histogram.
#[must_use]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
pub fn quantile_upper<T: Copy + Into<u64>>(hist: &[T], q: f64) -> Option<usize> {
    let total: u64 = hist.iter().map(|&c| c.into()).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in hist.iter().enumerate() {
        seen += c.into();
        if seen >= rank {
            return Some(i);
        }
    }
    Some(hist.len() - 1)
}

/// Counts of VM attempts by fate. Conservation: `submitted = finished + failed + oom_killed +
/// preempted + running + pending`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmCounts {
    /// Attempts submitted (trace arrivals plus retries of preempted ones).
    pub submitted: u64,
    /// Finished their work.
    pub finished: u64,
    /// Failed as the trace says.
    pub failed: u64,
    /// Killed for memory.
    pub oom_killed: u64,
    /// Evicted (preempted).
    pub preempted: u64,
    /// Still running at the end.
    pub running: u64,
    /// Still waiting for a node at the end.
    pub pending: u64,
}

impl VmCounts {
    /// True when every submitted attempt is accounted for exactly once.
    #[must_use]
    pub const fn conserved(&self) -> bool {
        self.submitted
            == self.finished
                + self.failed
                + self.oom_killed
                + self.preempted
                + self.running
                + self.pending
    }
}

/// The headline figures of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Mode name.
    pub mode: String,
    /// Node-steps simulated.
    pub node_steps: u64,
    /// Mean node CPU utilisation over all node-steps, percent.
    pub utilisation_mean_pct: f64,
    /// 95th percentile of node CPU utilisation over node-steps, percent.
    pub utilisation_p95_pct: f64,
    /// Node-minutes during which the modelled online p99 exceeded the SLO (contention model).
    pub slo_violation_minutes: f64,
    /// Mean modelled online p99, ms (contention model).
    pub online_p99_mean_ms: f64,
    /// 99th percentile over online node-steps of the modelled p99, ms (contention model).
    pub online_p99_p99_ms: f64,
    /// CPU delivered to offline VMs, core-hours.
    pub offline_core_hours: f64,
    /// Work of the VMs that finished, core-hours (their CPU demand × their work time).
    pub work_done_core_hours: f64,
    /// VM attempts by fate.
    pub vms: VmCounts,
    /// Batch jobs submitted.
    pub jobs_submitted: u64,
    /// Batch jobs whose every VM finished.
    pub jobs_finished: u64,
    /// Job completion time, median, minutes (finished jobs).
    pub jct_p50_min: Option<f64>,
    /// Job completion time, 99th percentile, minutes.
    pub jct_p99_min: Option<f64>,
    /// What the controller did (observe mode: would have done).
    pub actions: ActionCounts,
    /// Mean VMs per node.
    pub vms_per_node: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float form `p99_bin` had until 2026-11-29 (the output bytes depend on it).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn p99_bin_float(us: u32) -> usize {
        let x = f64::from(us.max(1)) / P99_LOW_US;
        if x <= 1.0 {
            return 0;
        }
        let bits = x.to_bits();
        let octave = ((bits >> 52) & 0x7ff) as usize - 1023;
        let frac = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52)) - 1.0;
        (octave * 8 + (frac * 8.0) as usize + 1).min(P99_BINS - 1)
    }

    #[test]
    fn p99_bin_is_the_float_form_exactly() {
        let edges = (0..32).flat_map(|o| (0..8u64).map(move |k| ((50 * (8 + k)) << o) >> 3));
        let near_edges = edges.flat_map(|e| e.saturating_sub(2)..e + 3);
        for us in (0..3_000_000u64)
            .chain(near_edges)
            .chain((0..1000).map(|i| u64::from(u32::MAX) - i))
            .filter_map(|u| u32::try_from(u).ok())
        {
            assert_eq!(p99_bin(us), p99_bin_float(us), "{us} µs");
        }
    }

    #[test]
    fn p99_bins_are_monotonic_and_bounded() {
        let mut last = 0;
        for us in [0, 49, 50, 51, 100, 230, 1000, 3850, 100_000, u32::MAX] {
            let b = p99_bin(us);
            assert!(b >= last && b < P99_BINS, "{us} -> {b}");
            assert!(
                f64::from(us) / 1000.0 <= p99_bin_upper_ms(b) + 1e-9 || b == P99_BINS - 1,
                "{us}"
            );
            last = b;
        }
    }

    #[test]
    fn quantiles() {
        let h = [0u32, 5, 0, 90, 5];
        assert_eq!(quantile_upper(&h, 0.5), Some(3));
        assert_eq!(quantile_upper(&h, 0.05), Some(1));
        assert_eq!(quantile_upper(&h, 0.99), Some(4));
        assert_eq!(quantile_upper(&[0u32; 3], 0.5), None);
    }
}
