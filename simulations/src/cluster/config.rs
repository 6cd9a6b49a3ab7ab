//! What a run is told and what it gives back: its settings, its errors, its result, and a
//! progress sink.

use std::time::Duration;

use colo_policy::scoring::ScoringParams;

use crate::calibration::Calibration;
use crate::metrics::{Bucket, Summary};
use crate::trace::TraceError;

/// How a run is set up (everything but the trace and the mode).
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Target of the online p99, ms. SLO figures are the contention model's.
    pub slo_p99_ms: f64,
    /// Measurements behind the contention model.
    pub calibration: Calibration,
    /// colo's scoring tunables (headroom, interference, admission, node score).
    pub scoring: ScoringParams,
    /// Interval of the extra evaluations of a node after its controller acts.
    pub tick: Duration,
    /// Most extra evaluations per node and step.
    pub max_ticks: u32,
    /// Feasible nodes the scheduler scores per VM before choosing (kube-scheduler scores a
    /// share of the feasible nodes, `percentageOfNodesToScore`, found from a rotating start).
    pub feasible_nodes: usize,
    /// Most node filter evaluations per step, as a multiple of the node count (the
    /// scheduler's throughput; a round of several steps gets as many times more).
    pub scan_budget: f64,
    /// Most placement attempts per step (a round of several steps gets as many times more).
    pub max_attempts: usize,
    /// Steps between two placement rounds: VMs that arrive during a round are placed while
    /// it runs, on the nodes' reports from before it, and start when the next round starts.
    /// Nodes step this many times in a row between rounds, which keeps each node's state in
    /// cache (default 6: one minute).
    pub placement_every: u32,
    /// Retry preempted VMs (as the job launcher does with a `Preempted` report).
    pub retry_preempted: bool,
    /// Threads stepping nodes.
    pub threads: usize,
    /// Number of time buckets of the series (at most; each bucket spans whole steps).
    pub buckets: u32,
    /// Put the heap on transparent huge pages ([`crate::hugepages`]) after rounds 1, 4, 16,
    /// 64, … (as the nodes' buffers grow): fewer TLB misses, same results. Process-wide, so
    /// off by default for library callers; the `colo-sim` binary turns it on.
    pub huge_pages: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            slo_p99_ms: 0.5,
            calibration: Calibration::default(),
            scoring: ScoringParams::default(),
            tick: Duration::from_millis(100),
            max_ticks: 8,
            feasible_nodes: 16,
            scan_budget: 2.0,
            max_attempts: 1024,
            placement_every: 6,
            retry_preempted: true,
            threads: 1,
            buckets: 1_152,
            huge_pages: false,
        }
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Nonsense settings.
    #[error("simulation settings: {0}")]
    Config(String),
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The headline figures.
    pub summary: Summary,
    /// The series, one bucket per `bucket_steps` steps.
    pub series: Vec<Bucket>,
    /// Steps per bucket.
    pub bucket_steps: u32,
    /// Seconds per step.
    pub step_secs: u32,
}

/// Something that wants to hear about progress (a progress bar).
pub trait Progress: Sync {
    /// `done` of `total` steps are simulated.
    fn update(&self, done: u64, total: u64);
}

impl Progress for () {
    fn update(&self, _: u64, _: u64) {}
}
