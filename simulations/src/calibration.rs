//! Every number the contention model rests on, in one place, each with where it came from.
//!
//! The model's coefficients are *derived* from the measured points below
//! ([`Coefficients::derive`]), so when colo's headline benchmark (`bench/`) reports its figures,
//! updating the measured values here recalibrates the whole simulator; nothing else holds a
//! magic number.
//! `docs/simulation.md` explains the derivation.

/// The measurements and assumptions behind the contention model.
///
/// Fields marked *measured* were measured with plain processes on colo's 2-core development
/// machine on 2026-11-28: nginx-light, one worker, 3,000 req/s open loop, alone and beside
/// `stress-ng` hogs. Fields marked *assumed* have no measurement yet; each says which
/// benchmark will replace it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Cores of the machine the measurements were taken on. *Measured*: `nproc` = 2.
    pub reference_cores: f64,
    /// CPU the online side used in the measurement (nginx plus its load generator), in cores.
    /// *Assumed* 0.3 (about 50 µs of CPU per request for nginx plus as much again for the
    /// generator); the headline benchmark reports node CPU utilisation of the "online alone"
    /// row, which replaces it.
    pub reference_online_cpu: f64,
    /// p99 of nginx alone, ms. *Measured*: 0.23.
    pub p99_alone_ms: f64,
    /// p99 beside `stress-ng --cpu 2` at the same CPU weight, ms. *Measured*: 3.85.
    pub p99_cpu_hog_ms: f64,
    /// CPU the hog asked for, in cores (`stress-ng --cpu 2`). *Measured*: 2.
    pub cpu_hog_cores: f64,
    /// p99 with the same hog in a `cpu.shares=2` cgroup, ms. *Measured*: 0.17 (below the alone
    /// figure: within the run-to-run noise, so the model reads it as "no inflation").
    pub p99_cpu_hog_low_weight_ms: f64,
    /// p99 beside `stress-ng --hdd 2` in the `cpu.shares=2` cgroup, ms. *Measured*: 0.62.
    pub p99_io_hog_low_weight_ms: f64,
    /// Share of the disk's bandwidth the IO hog kept busy. *Assumed* 1.0 (`stress-ng --hdd 2`
    /// writes as fast as the disk takes it); the headline benchmark's IO-hog scenario reports
    /// the offline IO rate, which replaces it.
    pub io_hog_disk_share: f64,
    /// Node CPU utilisation above which waking online tasks start finding every core busy.
    /// *Assumed* 0.8 (below it the scheduler finds an idle core for a waking task). The
    /// headline benchmark's utilisation sweep will replace it.
    pub busy_knee: f64,
    /// p99 added when the whole node's CPU runs memory-bandwidth-bound offline work, ms.
    /// *Assumed* 0.3: no measurement yet (CPU weights cannot stop it; SCHED_IDLE neither). The
    /// headline benchmark's memory-hog scenario replaces it.
    pub membw_full_ms: f64,
    /// p99 added at full memory-reclaim pressure (node memory at 100 %), ms. *Assumed* 2.0.
    /// The headline benchmark's memory-hog scenario replaces it.
    pub reclaim_full_ms: f64,
    /// Node memory share at which reclaim (and memory PSI) starts. *Assumed* 0.95.
    pub reclaim_start: f64,
    /// Mean service time of one disk request on an idle disk, ms (online IO latency at zero
    /// load). *Assumed* 0.5 (SSD).
    pub disk_service_ms: f64,
    /// Highest utilisation the queueing formulas are evaluated at (keeps them finite).
    /// Modelling choice: 0.98.
    pub max_utilisation: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            reference_cores: 2.0,
            reference_online_cpu: 0.3,
            p99_alone_ms: 0.23,
            p99_cpu_hog_ms: 3.85,
            cpu_hog_cores: 2.0,
            p99_cpu_hog_low_weight_ms: 0.17,
            p99_io_hog_low_weight_ms: 0.62,
            io_hog_disk_share: 1.0,
            busy_knee: 0.8,
            membw_full_ms: 0.3,
            reclaim_full_ms: 2.0,
            reclaim_start: 0.95,
            disk_service_ms: 0.5,
            max_utilisation: 0.98,
        }
    }
}

/// The model's coefficients, derived from a [`Calibration`] so that the model reproduces every
/// measured point (see the tests of `contention`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefficients {
    /// Online utilisation of the node in the reference measurement (online CPU ÷ cores).
    pub reference_utilisation: f64,
    /// p99 of the online service alone at the reference utilisation, ms.
    pub p99_alone_ms: f64,
    /// p99 added per unit of "busy-core occupancy by same-weight offline work", ms: roughly one
    /// CFS time slice, the wait of a waking online task behind a running offline thread.
    pub slice_ms: f64,
    /// How much of `slice_ms` low-weight (`cpu.shares=2`) or SCHED_IDLE offline work still
    /// causes, 0..1. Derived from the low-weight measurement and floored at 0.
    pub low_weight_residual: f64,
    /// The residual as measured, before flooring (negative = the measured p99 was below the
    /// alone figure). Kept for the documentation.
    pub low_weight_residual_raw: f64,
    /// p99 added per share of disk bandwidth used by offline IO, ms.
    pub io_ms_per_disk_share: f64,
    /// See [`Calibration::busy_knee`].
    pub busy_knee: f64,
    /// See [`Calibration::membw_full_ms`].
    pub membw_full_ms: f64,
    /// See [`Calibration::reclaim_full_ms`].
    pub reclaim_full_ms: f64,
    /// See [`Calibration::reclaim_start`].
    pub reclaim_start: f64,
    /// See [`Calibration::disk_service_ms`].
    pub disk_service_ms: f64,
    /// See [`Calibration::max_utilisation`].
    pub max_utilisation: f64,
    /// `p99_alone_ms × (1 − reference_utilisation)`: the queueing term's numerator.
    pub queue_numerator_ms: f64,
    /// `1 / (1 − busy_knee)`.
    pub inv_busy_span: f64,
    /// `1 / (1 − reclaim_start)`.
    pub inv_reclaim_span: f64,
}

impl Coefficients {
    /// Fits the coefficients to the measured points.
    ///
    /// - CPU hog at the same weight: the hog takes every core the online side leaves (node
    ///   fully busy), online keeps its fair share (half the node) so its queueing term rises to
    ///   `ρ = online ÷ (cores ÷ 2)`; the rest of the measured p99 is `slice_ms × occupancy`,
    ///   occupancy being the hog's share of the busy CPU.
    /// - CPU hog at low weight: online keeps the whole node; the p99 above the alone figure,
    ///   divided by the same-weight slice term, is the residual (floored at 0).
    /// - IO hog at low weight: the p99 above the alone figure, per share of disk bandwidth.
    #[must_use]
    pub fn derive(c: &Calibration) -> Self {
        let cores = c.reference_cores.max(f64::MIN_POSITIVE);
        let online = c.reference_online_cpu.clamp(0.0, cores);
        let rho0 = online / cores;
        let max_u = c.max_utilisation.clamp(0.5, 0.9999);
        let queue = |rho: f64| c.p99_alone_ms * (1.0 - rho0) / (1.0 - rho.min(max_u));
        // Same weight: online's fair share is half the node.
        let hog = c.cpu_hog_cores.min(cores - online).max(0.0);
        let busy = online + hog;
        let occupancy = if busy > 0.0 { hog / busy } else { 0.0 };
        let fair = (cores / 2.0).max(cores - c.cpu_hog_cores);
        let slice_ms = if occupancy > 0.0 {
            ((c.p99_cpu_hog_ms - queue(online / fair)) / occupancy).max(0.0)
        } else {
            0.0
        };
        let residual_raw = if slice_ms > 0.0 && occupancy > 0.0 {
            (c.p99_cpu_hog_low_weight_ms - c.p99_alone_ms) / (slice_ms * occupancy)
        } else {
            0.0
        };
        let io_ms = if c.io_hog_disk_share > 0.0 {
            ((c.p99_io_hog_low_weight_ms - c.p99_alone_ms) / c.io_hog_disk_share).max(0.0)
        } else {
            0.0
        };
        let knee = c.busy_knee.clamp(0.0, 0.99);
        let reclaim = c.reclaim_start.clamp(0.5, 0.999);
        Self {
            queue_numerator_ms: c.p99_alone_ms * (1.0 - rho0),
            inv_busy_span: 1.0 / (1.0 - knee),
            inv_reclaim_span: 1.0 / (1.0 - reclaim),
            reference_utilisation: rho0,
            p99_alone_ms: c.p99_alone_ms,
            slice_ms,
            low_weight_residual: residual_raw.clamp(0.0, 1.0),
            low_weight_residual_raw: residual_raw,
            io_ms_per_disk_share: io_ms,
            busy_knee: knee,
            membw_full_ms: c.membw_full_ms.max(0.0),
            reclaim_full_ms: c.reclaim_full_ms.max(0.0),
            reclaim_start: reclaim,
            disk_service_ms: c.disk_service_ms.max(0.0),
            max_utilisation: max_u,
        }
    }
}

impl Default for Coefficients {
    fn default() -> Self {
        Self::derive(&Calibration::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_coefficients_are_what_the_docs_say() {
        let k = Coefficients::default();
        assert!((k.reference_utilisation - 0.15).abs() < 1e-12);
        // (3.85 − 0.23 × 0.85 / 0.7) / 0.85
        assert!((k.slice_ms - 4.2008).abs() < 1e-3, "{}", k.slice_ms);
        assert_eq!(k.low_weight_residual, 0.0);
        assert!(k.low_weight_residual_raw < 0.0);
        assert!((k.io_ms_per_disk_share - 0.39).abs() < 1e-12);
    }

    #[test]
    fn odd_calibrations_do_not_produce_nan() {
        let c = Calibration {
            reference_cores: 0.0,
            reference_online_cpu: 5.0,
            cpu_hog_cores: 0.0,
            io_hog_disk_share: 0.0,
            max_utilisation: 2.0,
            ..Calibration::default()
        };
        let k = Coefficients::derive(&c);
        for v in [k.slice_ms, k.low_weight_residual, k.io_ms_per_disk_share] {
            assert!(v.is_finite());
        }
    }
}
