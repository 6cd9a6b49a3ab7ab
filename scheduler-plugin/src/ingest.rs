//! The gRPC side: agents stream `NodeReport`s in (`StreamReports`), operators list the table
//! (`ListNodes`).

use std::sync::Arc;
use std::time::Instant;

use colo_policy::scoring::{Admission, Resources, node_score};
use colo_proto::report::node_reports_server::NodeReports;
use colo_proto::report::{ListNodesRequest, ListNodesResponse, NodeReport, NodeView, ReportAck};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::{SchedulerConfig, StaleNodes};
use crate::metrics as m;
use crate::table::{Ingested, NodeSnapshot, NodeTable};

/// Acknowledgements queued per stream before the receiving side waits for the agent to read.
const ACK_QUEUE: usize = 64;

/// The `colo.report.v1.NodeReports` service.
#[derive(Debug, Clone)]
pub struct ReportService {
    table: Arc<NodeTable>,
    config: Arc<SchedulerConfig>,
    shutdown: watch::Receiver<bool>,
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
        }
    }
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
    table: Arc<NodeTable>,
    mut inbound: Streaming<NodeReport>,
    acks: mpsc::Sender<Result<ReportAck, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
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
                tracing::debug!("report stream ended: {status}");
                return;
            }
        };
        received.increment(1);
        let ack = match table.ingest(report, Instant::now()) {
            Ok(outcome) => {
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
                    Ingested::Ignored => {
                        metrics::counter!(m::REPORTS_IGNORED, "reason" => "duplicate").increment(1);
                    }
                }
                Ok(ReportAck {
                    seq: outcome.ack_seq,
                })
            }
            Err(e) => {
                metrics::counter!(m::REPORTS_IGNORED, "reason" => "invalid").increment(1);
                Err(Status::invalid_argument(e.to_string()))
            }
        };
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
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        tokio::spawn(pump(
            Arc::clone(&self.table),
            request.into_inner(),
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_nodes(
        &self,
        _request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let now = Instant::now();
        let mut nodes = Vec::new();
        self.table.for_each(now, |_, report, snap| {
            nodes.push(node_view(report, snap, &self.config));
        });
        nodes.sort_by(|a, b| {
            let name = |v: &NodeView| v.last.as_ref().map(|r| r.node_name.clone());
            name(a).cmp(&name(b))
        });
        Ok(Response::new(ListNodesResponse { nodes }))
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
