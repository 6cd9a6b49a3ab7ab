//! colo-sim: a trace-driven cluster simulator running colo's real policy and scoring code.

/// Default simulation step in seconds.
pub const DEFAULT_STEP_SECS: u64 = 10;
