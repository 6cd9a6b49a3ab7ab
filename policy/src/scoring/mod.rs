//! Node scoring for placement: how much a node can give to batch work, how much its online
//! services suffer, and what the cluster scheduler should hear about it.
//!
//! The same functions serve the agent (its own report, YARN health check), colo-scheduler (the
//! Kubernetes extender's filter and prioritize verbs) and the simulator. They are pure, take and
//! return `Copy` values, and never allocate: the simulator calls them for thousands of nodes per
//! step.
//!
//! The tunables come from the policy YAML's `scoring` section:
//! `ScoringParams::from(&policy.scoring)`; `ScoringParams::default()` equals its defaults.
//!
//! The pipeline:
//! 1. [`reclaimable`]: capacity − online usage − headroom, never negative;
//! 2. [`interference_score`]: run delay, PSI and SLI, each normalised to 0..100, combined into
//!    one score 0..100;
//! 3. [`batch_admission`]: whether the node takes batch work at all, with hysteresis (the caller
//!    keeps the previous [`Admission`]; no clock is needed);
//! 4. [`filter_node`] (a [`FilterVerdict`] with its reason) and [`node_score`] (0..10) for one
//!    batch request on one node.
//!
//! ```
//! use colo_policy::scoring::*;
//!
//! let p = ScoringParams::default();
//! let capacity = Resources::new(16_000, 64 << 30);
//! let online = Resources::new(9_000, 24 << 30);
//! let budget = reclaimable(capacity, online, headroom(capacity, &p.headroom));
//! let signals = InterferenceSignals { run_delay_ms_per_s: 12.0, psi_ms_per_s: 80.0, sli_ratio: Some(0.9) };
//! let interference = interference_score(&signals, &p.interference);
//! // The caller keeps the admission state per node (hysteresis without a clock).
//! let admission = batch_admission(interference.score, Admission::Accepting, &p.admission);
//! let node = NodeState { capacity, reclaimable: budget, offline_usage: Resources::new(2_000, 4 << 30), interference: interference.score };
//! let request = Resources::new(2_000, 4 << 30);
//! assert!(filter_node(&node, admission, request, &p.admission).fits());
//! assert!(node_score(&node, request, &p.node_score) <= MAX_NODE_SCORE);
//! ```

mod interference;
mod params;
mod placement;
mod resources;

pub use interference::{
    InterferenceScore, InterferenceSignals, PreparedInterference, interference_score,
};
pub use params::{
    AdmissionParams, HeadroomParams, InterferenceParams, InterferenceWeights, NodeScoreParams,
    Ramp, ScoringParams,
};
pub use placement::{
    Admission, FilterReason, FilterVerdict, MAX_NODE_SCORE, NodeState, batch_admission,
    filter_node, node_score,
};
pub use resources::{Resources, headroom, reclaimable};
