//! What a node needs to know about the run to step.

use std::time::Duration;

use colo_policy::scoring::{PreparedInterference, ScoringParams};

use crate::calibration::Coefficients;

/// What the node needs to know about the run.
#[derive(Clone, Copy, Debug)]
pub struct StepContext<'a> {
    /// Contention model coefficients.
    pub coefficients: &'a Coefficients,
    /// Scoring tunables (headroom, interference, admission) for the report.
    pub(super) scoring: &'a ScoringParams,
    /// `scoring.interference` prepared once (the report scores it at every step).
    pub(super) interference: PreparedInterference,
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
