//! colo's decision engine: `NodeSample` in, `Vec<Action>` out, and node scoring for placement.
//! Pure: no I/O, no clock, no threads, so the agent, the scheduler and the simulator run the very
//! same decisions.

/// Version of the decision logic, reported by agents so mixed fleets can be told apart.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod scoring;
