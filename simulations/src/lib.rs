//! colo-sim: a trace-driven cluster simulator that runs colo's real policy engine and scoring.
//!
//! - [`trace`]: what is replayed — a seeded [`trace::synthetic`] generator and the compact
//!   [`trace::binary`] format; [`alibaba`] reads and converts Alibaba cluster-trace-v2018 CSVs;
//! - [`contention`]: the documented model that maps CPU, memory and IO demand to online
//!   latency and to the signals colo's agent measures, calibrated in [`calibration`];
//! - [`vm`], [`node`] and [`cluster`]: the discrete-time loop; [`controller`]: the seam where
//!   each mode manages a node's offline side (baselines, and colo's engine in [`colo`]);
//! - [`mode`], [`compare`], [`report`], [`plot`]: all modes on one trace, the table, CSV and
//!   plots;
//! - [`float`], [`prefetch`], [`hugepages`]: the hot loop's helpers (fast float-to-integer
//!   conversion, cache prefetch hints, huge pages), which every layer may use and which use
//!   none.
//!
//! Online latency figures come from the contention model: the traces carry no latency.

pub mod alibaba;
pub mod calibration;
pub mod cluster;
pub mod colo;
pub mod compare;
pub mod contention;
pub mod controller;
pub mod float;
pub mod hugepages;
pub mod metrics;
pub mod mode;
pub mod node;
pub mod plot;
pub mod prefetch;
pub mod report;
pub mod rng;
pub mod trace;
pub mod vm;

/// Default simulation step in seconds.
pub const DEFAULT_STEP_SECS: u32 = 10;
