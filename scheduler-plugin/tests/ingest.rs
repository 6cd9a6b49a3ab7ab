//! Report ingest over real gRPC: acknowledgements, duplicates, gaps, agent restarts, bad
//! reports, ListNodes, /metrics, and graceful shutdown with streams open.

mod common;

use std::time::Duration;

use colo_proto::report::node_reports_client::NodeReportsClient;
use colo_proto::report::{ListNodesRequest, NodeReport, ReportAck};
use colo_scheduler::SchedulerConfig;
use colo_scheduler::http_client::HttpConnection;
use common::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

async fn open(
    s: &colo_scheduler::Running,
) -> (
    mpsc::Sender<NodeReport>,
    Streaming<ReportAck>,
    NodeReportsClient<tonic::transport::Channel>,
) {
    let mut client = NodeReportsClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(16);
    let acks = client
        .stream_reports(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, acks, client)
}

async fn ack(acks: &mut Streaming<ReportAck>) -> u64 {
    tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .expect("ack within 10 s")
        .unwrap()
        .unwrap()
        .seq
}

#[tokio::test]
async fn acks_duplicates_gaps_and_restarts() {
    let s = start(SchedulerConfig::default()).await;
    let (tx, mut acks, mut client) = open(&s).await;
    for seq in 1..=50 {
        tx.send(report("a", seq, (8_000, 8 * GIB), (0, 0), 10.0))
            .await
            .unwrap();
        assert_eq!(ack(&mut acks).await, seq);
    }
    tx.send(report("a", 25, (8_000, 8 * GIB), (0, 0), 10.0))
        .await
        .unwrap();
    assert_eq!(
        ack(&mut acks).await,
        50,
        "a duplicate is acked with the stored seq"
    );
    tx.send(report("a", 53, (8_000, 8 * GIB), (0, 0), 10.0))
        .await
        .unwrap();
    assert_eq!(ack(&mut acks).await, 53);
    assert_eq!(s.table.sequence("a"), Some((53, 2)), "two reports missing");

    let mut restarted = report("a", 1, (8_000, 8 * GIB), (0, 0), 10.0);
    restarted.agent_start_unix_ms = 2;
    tx.send(restarted).await.unwrap();
    assert_eq!(
        ack(&mut acks).await,
        1,
        "a restarted agent numbers from 1 again"
    );

    // One stream may carry several nodes (a relay); each keeps its own sequence.
    tx.send(report("b", 7, (1_000, GIB), (0, 0), 90.0))
        .await
        .unwrap();
    assert_eq!(ack(&mut acks).await, 7);

    let nodes = client
        .list_nodes(ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    assert_eq!(a.last.as_ref().unwrap().node_name, "a");
    assert!(a.schedulable && !a.stale && a.node_score > 0.0);
    assert!(a.age_seconds < 10.0);
    assert!(!b.schedulable);
    assert!(
        b.reason.contains("interference score 90/100"),
        "{}",
        b.reason
    );

    let mut http = HttpConnection::connect(s.http_addr).await.unwrap();
    let page = http.get("/metrics").await.unwrap();
    assert_eq!(page.status, 200);
    let page = String::from_utf8(page.body).unwrap();
    for line in [
        "colo_scheduler_report_gaps_total 2",
        "colo_scheduler_agent_restarts_total 1",
        "colo_scheduler_reports_ignored_total{reason=\"duplicate\"} 1",
        "colo_scheduler_nodes{state=\"fresh\"} 2",
    ] {
        assert!(page.lines().any(|l| l == line), "{line:?} not in\n{page}");
    }
    // Other tests in this process open streams too: only the series' presence is certain.
    assert!(
        page.lines()
            .any(|l| l.starts_with("colo_scheduler_report_streams "))
    );
    let nodes = http.get("/nodes").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&nodes.body).unwrap();
    assert_eq!(v["nodes"][0]["name"], "a");
    assert_eq!(v["nodes"][1]["schedulable"], false);
    assert!(v.get("continue").is_none(), "one page: {v}");
    assert_eq!(http.get("/healthz").await.unwrap().body, b"ok\n");
    drop(tx);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_report_without_a_node_name_ends_the_stream() {
    let s = start(SchedulerConfig::default()).await;
    let (tx, mut acks, _client) = open(&s).await;
    tx.send(report("", 4, (0, 0), (0, 0), 0.0)).await.unwrap();
    let status = acks.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("empty node_name"),
        "{}",
        status.message()
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_open_streams_promptly() {
    let s = start(SchedulerConfig::default()).await;
    let mut streams = Vec::new();
    for i in 0..20 {
        let (tx, mut acks, client) = open(&s).await;
        tx.send(report(&format!("n{i}"), 1, (1_000, GIB), (0, 0), 0.0))
            .await
            .unwrap();
        assert_eq!(ack(&mut acks).await, 1);
        streams.push((tx, acks, client));
    }
    let began = std::time::Instant::now();
    s.shutdown()
        .await
        .expect("graceful shutdown with 20 streams open");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    for (_tx, mut acks, _client) in streams {
        // The stream ends (cleanly or with a transport error), it does not hang.
        let end = tokio::time::timeout(Duration::from_secs(5), acks.message())
            .await
            .unwrap();
        assert!(!matches!(end, Ok(Some(_))));
    }
}
