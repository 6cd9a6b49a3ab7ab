//! The gRPC side: agents stream `NodeReport`s in (`StreamReports`), operators list the table
//! (`ListNodes`, paged).
//!
//! Every report passes [`report_check`](crate::report_check) before the table sees it; on a
//! mutual-TLS listener it must also be for a node the connection's certificate names. A refused
//! report ends its stream with the status that says why: `INVALID_ARGUMENT` (the report),
//! `PERMISSION_DENIED` (the certificate), `RESOURCE_EXHAUSTED` (the table is full).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use colo_policy::scoring::{Admission, Resources, node_score};
use colo_proto::report::node_reports_server::NodeReports;
use colo_proto::report::{ListNodesRequest, ListNodesResponse, NodeReport, NodeView, ReportAck};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::{SchedulerConfig, StaleNodes};
use crate::identity::PeerIdentity;
use crate::listen::Peer;
use crate::metrics as m;
use crate::table::{IngestError, Ingested, NodeSnapshot, NodeTable};

/// Acknowledgements queued per stream before the receiving side waits for the agent to read.
const ACK_QUEUE: usize = 64;

/// The `colo.report.v1.NodeReports` service.
#[derive(Debug, Clone)]
pub struct ReportService {
    table: Arc<NodeTable>,
    config: Arc<SchedulerConfig>,
    shutdown: watch::Receiver<bool>,
    /// Refuse streams whose connection carries no certificate identity.
    identity_required: bool,
}

impl ReportService {
    /// A service storing into `table`; streams end when `shutdown` turns true.
    #[must_use]
    pub fn new(
        table: Arc<NodeTable>,
        config: Arc<SchedulerConfig>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            table,
            config,
            shutdown,
            identity_required: false,
        }
    }

    /// Refuses every stream whose connection did not come through a mutual-TLS handshake (so
    /// that a mistake in wiring cannot turn the name check off).
    #[must_use]
    pub fn requiring_peer_identity(mut self) -> Self {
        self.identity_required = true;
        self
    }
}

/// The scheduler's wall clock, in Unix milliseconds.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why a report on a mutual-TLS connection is not for that connection to send, or `None` when
/// it is.
#[must_use]
pub fn identity_refusal(identity: &PeerIdentity, node: &str) -> Option<String> {
    (!identity.names(node)).then(|| {
        format!(
            "report for node {node:?} refused: the client certificate names {identity}, not \
             {node:?}; an agent may report only its own node: issue its certificate with CN or \
             a DNS subject alternative name equal to its node name (node.name in agent.yaml)"
        )
    })
}

/// Checks one report against the rules and the connection's certificate (`identity`, on a
/// mutual-TLS connection), then stores it: what `StreamReports` does with each message.
///
/// # Errors
/// The status that ends the stream: `INVALID_ARGUMENT` (the report), `PERMISSION_DENIED` (the
/// certificate), `RESOURCE_EXHAUSTED` (the table is full).
pub fn admit(
    table: &NodeTable,
    config: &SchedulerConfig,
    identity: Option<&PeerIdentity>,
    report: NodeReport,
) -> Result<ReportAck, Status> {
    let refuse = |reason: &'static str| {
        metrics::counter!(m::REPORTS_IGNORED, "reason" => reason).increment(1);
    };
    crate::report_check::check_node_name(&report.node_name, report.seq).map_err(|e| {
        refuse("invalid");
        Status::invalid_argument(e.to_string())
    })?;
    if let Some(msg) = identity.and_then(|id| identity_refusal(id, &report.node_name)) {
        refuse("forbidden");
        return Err(Status::permission_denied(msg));
    }
    crate::report_check::check(&report, unix_ms(), config.limits.max_clock_skew).map_err(|e| {
        refuse("invalid");
        Status::invalid_argument(e.to_string())
    })?;
    let outcome = table.ingest(report, Instant::now()).map_err(|e| match e {
        IngestError::TableFull { .. } => {
            refuse("table_full");
            Status::resource_exhausted(e.to_string())
        }
        IngestError::EmptyNodeName { .. } => {
            refuse("invalid");
            Status::invalid_argument(e.to_string())
        }
    })?;
    match outcome.ingested {
        Ingested::Stored {
            missed,
            agent_restarted,
        } => {
            if missed > 0 {
                metrics::counter!(m::REPORT_GAPS).increment(missed);
            }
            if agent_restarted {
                metrics::counter!(m::AGENT_RESTARTS).increment(1);
            }
        }
        Ingested::Ignored => refuse("duplicate"),
    }
    Ok(ReportAck {
        seq: outcome.ack_seq,
    })
}

/// Counts the open-stream gauge down when a stream's task ends, however it ends.
struct StreamGauge;

impl StreamGauge {
    fn open() -> Self {
        metrics::gauge!(m::REPORT_STREAMS).increment(1.0);
        Self
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        metrics::gauge!(m::REPORT_STREAMS).decrement(1.0);
    }
}

async fn pump(
    service: ReportService,
    peer: Option<Peer>,
    mut inbound: Streaming<NodeReport>,
    acks: mpsc::Sender<Result<ReportAck, Status>>,
) {
    let mut shutdown = service.shutdown.clone();
    let identity = peer.as_ref().and_then(|p| p.identity.clone());
    let _gauge = StreamGauge::open();
    let received = metrics::counter!(m::REPORTS_RECEIVED);
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
            msg = inbound.message() => msg,
        };
        let report = match msg {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(status) => {
                // A message over --max-report-bytes, or a broken stream: the agent learns why
                // (if it is still there).
                tracing::debug!("report stream ended: {status}");
                let _ = acks.send(Err(status)).await;
                return;
            }
        };
        received.increment(1);
        let ack = admit(&service.table, &service.config, identity.as_deref(), report);
        if let Err(status) = &ack {
            let addr = peer.as_ref().map(|p| p.addr);
            match status.code() {
                // A flood from one client would flood the log: the metric counts these.
                tonic::Code::ResourceExhausted => {
                    tracing::debug!(?addr, "report refused: {}", status.message());
                }
                _ => tracing::warn!(?addr, "report refused: {}", status.message()),
            }
        }
        let fatal = ack.is_err();
        if acks.send(ack).await.is_err() || fatal {
            return;
        }
    }
}

#[tonic::async_trait]
impl NodeReports for ReportService {
    type StreamReportsStream = ReceiverStream<Result<ReportAck, Status>>;

    async fn stream_reports(
        &self,
        request: Request<Streaming<NodeReport>>,
    ) -> Result<Response<Self::StreamReportsStream>, Status> {
        let peer = request.extensions().get::<Peer>().cloned();
        if self.identity_required && peer.as_ref().is_none_or(|p| p.identity.is_none()) {
            return Err(Status::permission_denied(
                "this listener accepts reports only over mutual TLS",
            ));
        }
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        tokio::spawn(pump(self.clone(), peer, request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let q = request.into_inner();
        let limit = crate::config::page_size(
            usize::try_from(q.page_size).unwrap_or(usize::MAX),
            self.config.limits.nodes_page_size,
        );
        let after = Some(q.page_token.as_str()).filter(|t| !t.is_empty());
        let (page, more) = self.table.page(after, limit, Instant::now());
        let next_page_token = if more {
            page.last()
                .map(|(r, _)| r.node_name.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let nodes: Vec<NodeView> = page
            .iter()
            .map(|(report, snap)| node_view(report, *snap, &self.config))
            .collect();
        Ok(Response::new(ListNodesResponse {
            nodes,
            next_page_token,
        }))
    }
}

/// The operator's view of one node: its last report, age, and what a batch pod requesting
/// nothing would get (schedulable or not, why, and its score).
#[must_use]
pub fn node_view(report: &NodeReport, snap: NodeSnapshot, config: &SchedulerConfig) -> NodeView {
    let stale = snap.age > config.stale_after;
    let (schedulable, reason, score) = if stale {
        match config.stale_nodes {
            StaleNodes::Filter => (false, stale_reason(snap.age, config), 0.0),
            StaleNodes::Neutral => (true, String::new(), f64::from(config.neutral_score)),
        }
    } else if snap.admission == Admission::Refusing {
        let r = colo_policy::scoring::filter_node(
            &snap.state,
            snap.admission,
            Resources::ZERO,
            &config.scoring.admission,
        );
        let reason = match r {
            colo_policy::scoring::FilterVerdict::Refused(r) => r.to_string(),
            colo_policy::scoring::FilterVerdict::Fits => String::new(),
        };
        (false, reason, 0.0)
    } else {
        let s = node_score(&snap.state, Resources::ZERO, &config.scoring.node_score);
        (true, String::new(), f64::from(s))
    };
    NodeView {
        last: Some(report.clone()),
        age_seconds: snap.age.as_secs_f64(),
        stale,
        node_score: score,
        schedulable,
        reason,
    }
}

/// Why a stale node is filtered.
#[must_use]
pub fn stale_reason(age: std::time::Duration, config: &SchedulerConfig) -> String {
    format!(
        "colo: last node report {} s ago, stale after {} s (is colo-agent running and reaching \
         colo-scheduler?)",
        age.as_secs(),
        config.stale_after.as_secs()
    )
}
