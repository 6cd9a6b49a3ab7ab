//! What colo-scheduler decides with: staleness, which pods are batch, scoring tunables.

use std::time::Duration;

use colo_policy::scoring::ScoringParams;

/// Default age after which a node's last report is stale (as Koordinator's
/// `nodeMetricExpirationSeconds`).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(180);

/// Default extended resource a batch pod requests CPU with, in millicores ("1000" = one core,
/// as Koordinator's `kubernetes.io/batch-cpu`).
pub const DEFAULT_BATCH_CPU_RESOURCE: &str = "colo.io/batch-cpu";

/// Default extended resource a batch pod requests memory with, in bytes.
pub const DEFAULT_BATCH_MEMORY_RESOURCE: &str = "colo.io/batch-memory";

/// What happens to a node whose last report is older than the staleness limit (or that never
/// reported).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StaleNodes {
    /// The node takes no batch work until it reports again (Koordinator's default,
    /// `enableScheduleWhenNodeMetricsExpired: false`).
    #[default]
    Filter,
    /// The node passes the filter and gets the neutral score: colo neither steers towards it
    /// nor away from it.
    Neutral,
}

/// Which pods colo acts on. A pod is batch when any rule matches; every other pod passes through
/// with every node kept and equal scores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPodSelector {
    /// `spec.priorityClassName` values that mark a batch pod.
    pub priority_classes: Vec<String>,
    /// Labels (`key`, `value`) that mark a batch pod; an empty value matches any value.
    pub labels: Vec<(String, String)>,
    /// Extended resource holding batch CPU in millicores; a pod requesting it is batch.
    pub cpu_resource: String,
    /// Extended resource holding batch memory in bytes; a pod requesting it is batch.
    pub memory_resource: String,
}

impl Default for BatchPodSelector {
    fn default() -> Self {
        Self {
            priority_classes: Vec::new(),
            labels: vec![("colo.io/qos".to_owned(), "batch".to_owned())],
            cpu_resource: DEFAULT_BATCH_CPU_RESOURCE.to_owned(),
            memory_resource: DEFAULT_BATCH_MEMORY_RESOURCE.to_owned(),
        }
    }
}

/// The decision-making part of colo-scheduler's configuration (listen addresses live with the
/// binary).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// A node whose last report is older than this is stale.
    pub stale_after: Duration,
    /// What stale and unknown nodes get.
    pub stale_nodes: StaleNodes,
    /// Score (0..10) of stale nodes under [`StaleNodes::Neutral`]. Default 5.
    pub neutral_score: u8,
    /// Which pods are batch.
    pub batch: BatchPodSelector,
    /// Scoring tunables (admission thresholds, score weights).
    pub scoring: ScoringParams,
    /// Path prefix of the extender verbs: `{prefix}/filter`, `{prefix}/prioritize`,
    /// `{prefix}/preempt`. Default `/colo`.
    pub extender_prefix: String,
    /// Largest extender request body accepted, in bytes. Default 64 MiB (a full `NodeList` of
    /// 5,000 nodes is about 25 MiB).
    pub max_request_bytes: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            stale_after: DEFAULT_STALE_AFTER,
            stale_nodes: StaleNodes::default(),
            neutral_score: 5,
            batch: BatchPodSelector::default(),
            scoring: ScoringParams::default(),
            extender_prefix: "/colo".to_owned(),
            max_request_bytes: 64 << 20,
        }
    }
}
