//! The Kubernetes scheduler extender over HTTP (`k8s.io/kube-scheduler/extender/v1`):
//! `POST {prefix}/filter`, `{prefix}/prioritize`, `{prefix}/preempt`; plus `/metrics`,
//! `/healthz` and `/nodes` (paged) on the same listener. Request bodies are read under
//! [`body`]'s bounds.

mod body;
mod decide;
mod nodes;
mod pod;
mod quantity;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

pub use crate::gojson::{NameList, Text};
pub use body::{BodyBudget, BoundedBody};
pub use decide::RequestError;
pub use pod::{batch_request, is_batch};
pub use quantity::{Quantity, QuantityError};
pub use wire::{ExtenderArgs, ExtenderPreemptionArgs, Pod};

use crate::config::SchedulerConfig;
use crate::metrics as m;
use crate::table::NodeTable;

/// The extender looks a request's names up in the table straight from the request's list.
impl crate::table::NameSource for NameList<'_> {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn name_bytes(&self, i: usize) -> &[u8] {
        self.bytes(i)
    }
}

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
    /// Bounds on request bodies, shared by every connection.
    pub bodies: Arc<BodyBudget>,
}

impl HttpState {
    /// The state for `table` under `config`, with a body budget from `config`'s limits.
    #[must_use]
    pub fn new(
        table: Arc<NodeTable>,
        config: Arc<SchedulerConfig>,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let bodies = Arc::new(BodyBudget::new(
            config.max_request_bytes,
            config.limits.max_body_bytes_in_flight,
            config.limits.body_read_timeout,
        ));
        Self {
            table,
            config,
            metrics,
            bodies,
        }
    }
}

/// The extender verbs and the operator endpoints.
pub fn router(state: HttpState) -> Router {
    let prefix = state
        .config
        .extender_prefix
        .trim_end_matches('/')
        .to_owned();
    Router::new()
        .route(&format!("{prefix}/filter"), post(filter))
        .route(&format!("{prefix}/prioritize"), post(prioritize))
        .route(&format!("{prefix}/preempt"), post(preempt))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/nodes", get(nodes::nodes))
        .with_state(state)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs `f` inline for small bodies, on the blocking pool for large ones. The body (and its
/// share of the in-flight budget) is held until `f` is done.
async fn decide<F>(body: BoundedBody, f: F) -> Response
where
    F: FnOnce(&[u8]) -> Response + Send + 'static,
{
    if body.bytes.len() <= INLINE_BODY_BYTES {
        return f(&body.bytes);
    }
    match tokio::task::spawn_blocking(move || f(&body.bytes)).await {
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

/// As [`filter_answer`], for `POST {prefix}/preempt`.
///
/// # Errors
/// A message when the request cannot be served (the HTTP handler answers 400 with it).
pub fn preempt_answer(
    table: &NodeTable,
    config: &SchedulerConfig,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    serde_json::from_slice::<ExtenderPreemptionArgs>(body)
        .map_err(|e| format!("cannot decode ExtenderPreemptionArgs: {e}"))
        .and_then(|args| decide::preempt(args, table, config, start).map_err(|e| e.to_string()))
}

async fn filter(State(s): State<HttpState>, body: BoundedBody) -> Response {
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

async fn prioritize(State(s): State<HttpState>, body: BoundedBody) -> Response {
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

async fn preempt(State(s): State<HttpState>, body: BoundedBody) -> Response {
    decide(body, move |body| {
        let start = Instant::now();
        let result = preempt_answer(&s.table, &s.config, body);
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
