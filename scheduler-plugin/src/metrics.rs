//! Prometheus metrics of colo-scheduler (`/metrics`).
//!
//! Metrics go through the `metrics` facade into one process-wide Prometheus recorder. With
//! 100,000 nodes per-node series would swamp Prometheus, so every series here is per scheduler;
//! per-node detail is in `ListNodes` and `/nodes`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Reports received on all streams (counter).
pub const REPORTS_RECEIVED: &str = "colo_scheduler_reports_received_total";
/// Reports ignored, by `reason`: `duplicate` (sequence not newer), `invalid` (refused by the
/// report check), `forbidden` (a node the connection's certificate does not name), `table_full`
/// (counter).
pub const REPORTS_IGNORED: &str = "colo_scheduler_reports_ignored_total";
/// Reports found missing through sequence gaps (counter).
pub const REPORT_GAPS: &str = "colo_scheduler_report_gaps_total";
/// Agent restarts seen (a new `agent_start_unix_ms`) (counter).
pub const AGENT_RESTARTS: &str = "colo_scheduler_agent_restarts_total";
/// Report streams open now (gauge).
pub const REPORT_STREAMS: &str = "colo_scheduler_report_streams";
/// Nodes known, by `state`: `fresh` or `stale` (gauge, computed at scrape).
pub const NODES: &str = "colo_scheduler_nodes";
/// Extender requests, by `verb` and `outcome` (`ok` or `error`) (counter).
pub const EXTENDER_REQUESTS: &str = "colo_scheduler_extender_requests_total";
/// Extender request handling time in seconds, by `verb` (histogram, [`EXTENDER_BUCKETS`]).
pub const EXTENDER_SECONDS: &str = "colo_scheduler_extender_request_seconds";
/// Buckets of [`EXTENDER_SECONDS`]: a verb takes well under a millisecond at 5,000 node names;
/// the top buckets reach kube-scheduler's extender `httpTimeout` (seconds). Histograms, unlike
/// summaries, can be aggregated across colo-scheduler replicas.
pub const EXTENDER_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Nodes a filter call rejected, by `kind`: `failed` or `unresolvable` (counter).
pub const FILTER_REJECTIONS: &str = "colo_scheduler_filter_rejected_nodes_total";
/// Nodes dropped from the table after reporting nothing for `--forget-after` (counter).
pub const NODES_FORGOTTEN: &str = "colo_scheduler_nodes_forgotten_total";
/// TLS handshakes that failed, by `listener` (`grpc`, `http`) and `reason`: `refused` (no or
/// untrusted client certificate, bad protocol), `timeout` (counter).
pub const TLS_HANDSHAKE_FAILURES: &str = "colo_scheduler_tls_handshake_failures_total";
/// HTTP requests refused before their body was read in full, by `reason`: `too_large`,
/// `timeout`, `busy` (no room under the bodies-in-flight budget in time) (counter).
pub const HTTP_BODIES_REFUSED: &str = "colo_scheduler_http_bodies_refused_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle; `None` when some
/// other recorder was installed first (then colo-scheduler's metrics go to that one and
/// `/metrics` says so).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = match PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(EXTENDER_SECONDS.into()), EXTENDER_BUCKETS)
            {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::warn!("histogram buckets refused, /metrics is empty: {e}");
                    return None;
                }
            };
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!("metrics recorder already installed, /metrics is empty: {e}");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REPORTS_RECEIVED, "Node reports received on all streams.");
    describe_counter!(REPORTS_IGNORED, "Node reports ignored, by reason.");
    describe_counter!(
        REPORT_GAPS,
        "Node reports found missing through sequence gaps."
    );
    describe_counter!(
        AGENT_RESTARTS,
        "Agent restarts seen through a new agent start time."
    );
    describe_gauge!(REPORT_STREAMS, "Report streams open now.");
    describe_gauge!(NODES, "Nodes known, by state (fresh, stale).");
    describe_counter!(
        EXTENDER_REQUESTS,
        "Scheduler-extender requests, by verb and outcome."
    );
    describe_histogram!(
        EXTENDER_SECONDS,
        Unit::Seconds,
        "Scheduler-extender request handling time."
    );
    describe_counter!(
        FILTER_REJECTIONS,
        "Nodes rejected by filter calls, by kind."
    );
    describe_counter!(
        NODES_FORGOTTEN,
        "Nodes dropped from the table after reporting nothing for --forget-after."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed, by listener and reason."
    );
    describe_counter!(
        HTTP_BODIES_REFUSED,
        "HTTP requests refused before their body was read, by reason."
    );
}
