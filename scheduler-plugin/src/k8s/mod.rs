//! The Kubernetes scheduler extender over HTTP (`k8s.io/kube-scheduler/extender/v1`):
//! `POST {prefix}/filter`, `{prefix}/prioritize`, `{prefix}/preempt`; plus `/metrics`,
//! `/healthz` and `/nodes` on the same listener.

mod decide;
mod decode;
mod gojson;
mod pod;
mod quantity;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

pub use decide::RequestError;
pub use decode::{NameList, Text};
pub(crate) use gojson::is_plain as is_json_plain;
pub use pod::{batch_request, is_batch};
pub use quantity::{Quantity, QuantityError};
pub use wire::{ExtenderArgs, ExtenderPreemptionArgs, Pod};

use crate::config::SchedulerConfig;
use crate::metrics as m;
use crate::table::NodeTable;

/// Bodies larger than this are decided on the blocking pool, so a full `NodeList` does not hold
/// an async worker.
const INLINE_BODY_BYTES: usize = 1 << 20;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The node table.
    pub table: Arc<NodeTable>,
    /// Decision settings.
    pub config: Arc<SchedulerConfig>,
    /// The Prometheus handle, when this process's recorder is colo-scheduler's.
    pub metrics: Option<PrometheusHandle>,
}

/// The extender verbs and the operator endpoints.
pub fn router(state: HttpState) -> Router {
    let prefix = state
        .config
        .extender_prefix
        .trim_end_matches('/')
        .to_owned();
    let limit = state.config.max_request_bytes;
    Router::new()
        .route(&format!("{prefix}/filter"), post(filter))
        .route(&format!("{prefix}/prioritize"), post(prioritize))
        .route(&format!("{prefix}/preempt"), post(preempt))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/nodes", get(nodes))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs `f` inline for small bodies, on the blocking pool for large ones.
async fn decide<F>(body: Bytes, f: F) -> Response
where
    F: FnOnce(&[u8]) -> Response + Send + 'static,
{
    if body.len() <= INLINE_BODY_BYTES {
        return f(&body);
    }
    match tokio::task::spawn_blocking(move || f(&body)).await {
        Ok(r) => r,
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("decision task failed: {e}\n"),
        )
            .into_response(),
    }
}

fn decode_args(body: &[u8]) -> Result<ExtenderArgs<'_>, String> {
    std::str::from_utf8(body)
        .map_err(|e| e.to_string())
        .and_then(ExtenderArgs::decode)
        .map_err(|e| format!("cannot decode ExtenderArgs: {e}"))
}

fn record(verb: &'static str, ok: bool, start: Instant) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(m::EXTENDER_REQUESTS, "verb" => verb, "outcome" => outcome).increment(1);
    metrics::histogram!(m::EXTENDER_SECONDS, "verb" => verb).record(start.elapsed().as_secs_f64());
}

/// The body of colo's answer to a filter call with request body `body`, decided now: exactly
/// what `POST {prefix}/filter` does between reading the request and writing the answer (decode,
/// look up, decide, encode), without HTTP. For embedding and for timing the server's own work.
///
/// # Errors
/// A message when the request cannot be served (the HTTP handler sends it as `Error`).
pub fn filter_answer(
    table: &NodeTable,
    config: &SchedulerConfig,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    decode_args(body)
        .and_then(|args| decide::filter(&args, table, config, start).map_err(|e| e.to_string()))
}

/// As [`filter_answer`], for `POST {prefix}/prioritize`.
///
/// # Errors
/// A message when the request cannot be served (the HTTP handler answers 400 with it).
pub fn prioritize_answer(
    table: &NodeTable,
    config: &SchedulerConfig,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    decode_args(body)
        .and_then(|args| decide::prioritize(&args, table, config, start).map_err(|e| e.to_string()))
}

async fn filter(State(s): State<HttpState>, body: Bytes) -> Response {
    decide(body, move |body| {
        let start = Instant::now();
        let result = filter_answer(&s.table, &s.config, body);
        record("filter", result.is_ok(), start);
        match result {
            Ok(bytes) => json(StatusCode::OK, bytes),
            Err(msg) => {
                tracing::warn!("filter: {msg}");
                // kube-scheduler reads Error from a 200 answer and reports it.
                json(StatusCode::OK, decide::filter_error(msg))
            }
        }
    })
    .await
}

fn plain_error(msg: String) -> Response {
    // HostPriorityList and ExtenderPreemptionResult have no Error field: a non-200 status is
    // how kube-scheduler learns of the failure.
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

async fn prioritize(State(s): State<HttpState>, body: Bytes) -> Response {
    decide(body, move |body| {
        let start = Instant::now();
        let result = prioritize_answer(&s.table, &s.config, body);
        record("prioritize", result.is_ok(), start);
        match result {
            Ok(bytes) => json(StatusCode::OK, bytes),
            Err(msg) => {
                tracing::warn!("prioritize: {msg}");
                plain_error(msg)
            }
        }
    })
    .await
}

async fn preempt(State(s): State<HttpState>, body: Bytes) -> Response {
    decide(body, move |body| {
        let start = Instant::now();
        let result = serde_json::from_slice::<ExtenderPreemptionArgs>(body)
            .map_err(|e| format!("cannot decode ExtenderPreemptionArgs: {e}"))
            .and_then(|args| {
                decide::preempt(args, &s.table, &s.config, start).map_err(|e| e.to_string())
            });
        record("preempt", result.is_ok(), start);
        match result {
            Ok(bytes) => json(StatusCode::OK, bytes),
            Err(msg) => {
                tracing::warn!("preempt: {msg}");
                plain_error(msg)
            }
        }
    })
    .await
}

async fn metrics_page(State(s): State<HttpState>) -> Response {
    let (total, stale) = s.table.counts(Instant::now(), s.config.stale_after);
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!(m::NODES, "state" => "fresh").set((total - stale) as f64);
        metrics::gauge!(m::NODES, "state" => "stale").set(stale as f64);
    }
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics go to another recorder installed in this process\n",
        )
            .into_response(),
    }
}

/// One node in `/nodes`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRow<'a> {
    name: &'a str,
    seq: u64,
    age_seconds: f64,
    stale: bool,
    schedulable: bool,
    score: f64,
    interference: f64,
    reclaimable_millicores: u64,
    reclaimable_memory_bytes: u64,
    reason: String,
}

async fn nodes(State(s): State<HttpState>) -> Response {
    let now = Instant::now();
    let mut rows = Vec::new();
    s.table.for_each(now, |_, report, snap| {
        let v = crate::ingest::node_view(report, snap, &s.config);
        rows.push((report.node_name.clone(), report.seq, v, snap));
    });
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let out: Vec<NodeRow<'_>> = rows
        .iter()
        .map(|(name, seq, v, snap)| NodeRow {
            name,
            seq: *seq,
            age_seconds: v.age_seconds,
            stale: v.stale,
            schedulable: v.schedulable,
            score: v.node_score,
            interference: snap.state.interference,
            reclaimable_millicores: snap.state.reclaimable.cpu_millicores,
            reclaimable_memory_bytes: snap.state.reclaimable.memory_bytes,
            reason: v.reason.clone(),
        })
        .collect();
    json(StatusCode::OK, serde_json::to_vec(&out).unwrap_or_default())
}
