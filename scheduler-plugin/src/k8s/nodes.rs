//! `GET /nodes`: the table for operators, one page at a time, in name order.
//!
//! `?limit=N` (default `--nodes-page-size`, at most 5,000) and `?continue=TOKEN`, where the token
//! is the `continue` of the previous page (the last name it held), as Kubernetes lists page. A
//! page costs a copy of the names after the token and of its own rows, so a listing of 10,000
//! nodes is never built at once.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{HttpState, json};
use crate::config::page_size;

/// The query of `GET /nodes`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct PageQuery {
    /// Most nodes in the answer; 0 or absent: the configured page size.
    #[serde(default)]
    limit: usize,
    /// Start after this name (the previous page's `continue`).
    #[serde(default, rename = "continue")]
    after: Option<String>,
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

/// A page of `/nodes`.
#[derive(Debug, serde::Serialize)]
struct Page<'a> {
    nodes: Vec<NodeRow<'a>>,
    /// The token for the next page; absent on the last one.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
}

pub(super) async fn nodes(State(s): State<HttpState>, Query(q): Query<PageQuery>) -> Response {
    let now = Instant::now();
    let limit = page_size(q.limit, s.config.limits.nodes_page_size);
    let (page, more) = s
        .table
        .page(q.after.as_deref().filter(|a| !a.is_empty()), limit, now);
    let views: Vec<_> = page
        .iter()
        .map(|(report, snap)| {
            (
                report,
                crate::ingest::node_view(report, *snap, &s.config),
                snap,
            )
        })
        .collect();
    let rows = views
        .iter()
        .map(|(report, v, snap)| NodeRow {
            name: &report.node_name,
            seq: report.seq,
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
    let next = if more {
        page.last().map(|(r, _)| r.node_name.as_str())
    } else {
        None
    };
    let body = serde_json::to_vec(&Page { nodes: rows, next }).unwrap_or_default();
    json(StatusCode::OK, body)
}
