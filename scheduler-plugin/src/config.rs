//! What colo-scheduler decides with (staleness, which pods are batch, scoring tunables), and the
//! limits on what its clients can make it hold ([`Limits`]).

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
    /// Bounds on nodes, reports, connections and request bodies.
    pub limits: Limits,
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
            limits: Limits::default(),
        }
    }
}

/// Default of [`Limits::max_nodes`].
pub const DEFAULT_MAX_NODES: usize = 10_000;

/// Most nodes any table may be configured to hold (names, records and reports of a million
/// nodes are about 1.5 GiB).
pub const MAX_MAX_NODES: usize = 1_000_000;

/// Largest `/nodes` page, whatever `limit` a request asks for.
pub const MAX_NODES_PAGE: usize = 5_000;

/// The page size a node listing (`/nodes`, `ListNodes`) gets: its `limit`, else the default, at
/// most [`MAX_NODES_PAGE`].
pub(crate) fn page_size(asked: usize, default: usize) -> usize {
    if asked == 0 { default } else { asked }.min(MAX_NODES_PAGE)
}

/// What clients can make colo-scheduler hold, and for how long. Every default is far above what
/// a healthy cluster uses; each bound turns a flood into refusals instead of memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most nodes in the table; a report for a new node beyond it is refused
    /// (`RESOURCE_EXHAUSTED`). Default 10,000 (Kubernetes supports 5,000 nodes a cluster).
    pub max_nodes: usize,
    /// A node whose last report is older than this is dropped from the table (it is then
    /// unknown, which placement treats as stale). Default 1 h.
    pub forget_after: Duration,
    /// How far a report's timestamps may be ahead of the scheduler's clock. Default 60 s.
    pub max_clock_skew: Duration,
    /// Largest gRPC message accepted on the report port, in bytes. Default 16 KiB (a report is
    /// about 200 bytes).
    pub max_report_bytes: usize,
    /// Time a new connection has to finish its TLS handshake (and, on the gRPC port, send the
    /// HTTP/2 preface), and an HTTP connection to send a request's header (also while idle
    /// between requests). Default 10 s.
    pub header_read_timeout: Duration,
    /// Time an HTTP request has to deliver its whole body once its header is in (waiting for
    /// room under [`Limits::max_body_bytes_in_flight`] included). Default 30 s.
    pub body_read_timeout: Duration,
    /// Bytes of HTTP request bodies held at once over all connections (a body reserves its
    /// `Content-Length`, or the largest size allowed when it has none). Default 160 MiB.
    pub max_body_bytes_in_flight: usize,
    /// Nodes per `/nodes` or `ListNodes` page when the request asks for no particular number.
    /// Default 500.
    pub nodes_page_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: DEFAULT_MAX_NODES,
            forget_after: Duration::from_secs(3600),
            max_clock_skew: Duration::from_secs(60),
            max_report_bytes: 16 << 10,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_body_bytes_in_flight: 160 << 20,
            nodes_page_size: 500,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value is outside what colo-scheduler can serve with.
    #[error("{flag} = {value} is out of range: {rule}")]
    OutOfRange {
        /// The command-line flag that sets it.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        rule: &'static str,
    },
}

impl SchedulerConfig {
    /// Checks the limits against each other and against what the table can hold.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] naming the flag, the value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |flag, value: String, rule| Err(ConfigError::OutOfRange { flag, value, rule });
        if !(1..=MAX_MAX_NODES).contains(&l.max_nodes) {
            return bad("--max-nodes", l.max_nodes.to_string(), "1 to 1,000,000");
        }
        if l.forget_after < self.stale_after {
            return bad(
                "--forget-after",
                format!("{:?}", l.forget_after),
                "at least --stale-after: a node is stale before it is forgotten",
            );
        }
        if !(1024..=64 << 20).contains(&l.max_report_bytes) {
            return bad(
                "--max-report-bytes",
                l.max_report_bytes.to_string(),
                "1 KiB to 64 MiB",
            );
        }
        if l.header_read_timeout.is_zero() || l.body_read_timeout.is_zero() {
            return bad(
                "--header-read-timeout / --body-read-timeout",
                format!("{:?} / {:?}", l.header_read_timeout, l.body_read_timeout),
                "above zero",
            );
        }
        if !(1..=1 << 30).contains(&self.max_request_bytes) {
            return bad(
                "--max-request-bytes",
                self.max_request_bytes.to_string(),
                "1 byte to 1 GiB",
            );
        }
        if l.max_body_bytes_in_flight < self.max_request_bytes {
            return bad(
                "--max-body-bytes-in-flight",
                l.max_body_bytes_in_flight.to_string(),
                "at least --max-request-bytes, or the largest request could never be read",
            );
        }
        if !(1..=MAX_NODES_PAGE).contains(&l.nodes_page_size) {
            return bad(
                "--nodes-page-size",
                l.nodes_page_size.to_string(),
                "1 to 5,000",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0, 500), 500);
        assert_eq!(page_size(20, 500), 20);
        assert_eq!(page_size(1_000_000, 500), MAX_NODES_PAGE);
    }

    #[test]
    fn the_defaults_hold_and_bad_limits_name_their_flag() {
        assert_eq!(SchedulerConfig::default().validate(), Ok(()));
        let with = |f: fn(&mut SchedulerConfig)| {
            let mut c = SchedulerConfig::default();
            f(&mut c);
            match c.validate() {
                Err(ConfigError::OutOfRange { flag, .. }) => flag,
                Ok(()) => "ok",
            }
        };
        assert_eq!(with(|c| c.limits.max_nodes = 0), "--max-nodes");
        assert_eq!(
            with(|c| c.limits.max_nodes = MAX_MAX_NODES + 1),
            "--max-nodes"
        );
        assert_eq!(
            with(|c| c.limits.forget_after = Duration::from_secs(10)),
            "--forget-after"
        );
        assert_eq!(
            with(|c| c.limits.max_body_bytes_in_flight = 1 << 20),
            "--max-body-bytes-in-flight"
        );
        assert_eq!(
            with(|c| c.limits.nodes_page_size = MAX_NODES_PAGE + 1),
            "--nodes-page-size"
        );
        assert_eq!(
            with(|c| c.limits.header_read_timeout = Duration::ZERO),
            "--header-read-timeout / --body-read-timeout"
        );
        assert_eq!(
            with(|c| c.max_request_bytes = 2 << 30),
            "--max-request-bytes"
        );
    }
}
