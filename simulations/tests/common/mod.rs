//! Shared by colo-sim's integration tests: small fleets, quick runs.
#![allow(dead_code)]

use colo_sim::cluster::{RunResult, SimConfig};
use colo_sim::compare::{self, Mode, ModeSettings};
use colo_sim::controller::StaticReservation;
use colo_sim::trace::synthetic::{SyntheticParams, SyntheticTrace};
use colo_sim::trace::{TraceError, TraceSource};

/// 40 nodes for 6 hours at 10 s steps: under 100,000 node-steps per mode.
pub fn small(seed: u64) -> SyntheticParams {
    SyntheticParams {
        seed,
        nodes: 40,
        days: 0.25,
        ..SyntheticParams::default()
    }
}

/// Default mode settings.
pub fn settings() -> ModeSettings {
    ModeSettings {
        static_reservation: StaticReservation::default(),
        policy: None,
    }
}

/// Opens the synthetic trace of `p`.
pub fn synthetic(
    p: &SyntheticParams,
) -> impl Fn() -> Result<Box<dyn TraceSource>, TraceError> + Sync + '_ {
    move || Ok(Box::new(SyntheticTrace::new(p)?) as Box<dyn TraceSource>)
}

/// Runs `modes` on the synthetic trace of `p`.
pub fn run(p: &SyntheticParams, modes: &[Mode], cfg: &SimConfig) -> Vec<RunResult> {
    compare::compare(synthetic(p), cfg, modes, &settings(), &()).unwrap()
}

/// The modes that need no policy engine.
pub const BASELINES: [Mode; 2] = [Mode::NoColocation, Mode::StaticReservation];

/// Every mode of the comparison.
pub const ALL: [Mode; 4] = Mode::ALL;
