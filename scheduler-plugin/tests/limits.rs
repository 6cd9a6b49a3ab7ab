//! The limits over real gRPC and HTTP, in-process: `/nodes` and `ListNodes` come in pages; a
//! full table refuses new nodes with RESOURCE_EXHAUSTED while known nodes keep reporting; silent
//! nodes are forgotten; invalid and oversize reports are refused.

mod common;

use std::time::{Duration, Instant};

use colo_proto::report::node_reports_client::NodeReportsClient;
use colo_proto::report::{ListNodesRequest, NodeReport};
use colo_scheduler::http_client::HttpConnection;
use colo_scheduler::{Limits, SchedulerConfig};
use common::*;
use tokio_stream::wrappers::ReceiverStream;

/// Sends one report on a new stream: its ack, or the status that ended the stream.
async fn send_one(s: &colo_scheduler::Running, r: NodeReport) -> Result<u64, tonic::Status> {
    let mut client = NodeReportsClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(r).await.unwrap();
    let mut acks = client
        .stream_reports(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let ack = tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .expect("an answer within 10 s")?;
    Ok(ack.expect("an ack").seq)
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn nodes_come_in_pages() {
    let s = start(SchedulerConfig {
        limits: Limits {
            nodes_page_size: 40,
            ..Limits::default()
        },
        ..SchedulerConfig::default()
    })
    .await;
    let now = Instant::now();
    let mut want: Vec<String> = (0..101).map(|i| format!("node-{i:03}")).collect();
    for n in want.iter().rev() {
        s.table
            .ingest(report(n, 1, (1_000, GIB), (0, 0), 5.0), now)
            .unwrap();
    }
    want.sort();
    let mut http = HttpConnection::connect(s.http_addr).await.unwrap();
    // The default page size, then the continue token to the end.
    let mut got = Vec::new();
    let mut path = "/nodes".to_owned();
    let mut pages = 0;
    loop {
        let r = http.get(&path).await.unwrap();
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        got.extend(names(&v));
        pages += 1;
        match v["continue"].as_str() {
            Some(token) => path = format!("/nodes?continue={token}"),
            None => break,
        }
    }
    assert_eq!(pages, 3, "40 + 40 + 21");
    assert_eq!(got, want);
    // An explicit limit.
    let r = http.get("/nodes?limit=7&continue=node-050").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(names(&v), want[51..58]);
    assert_eq!(v["continue"], "node-057");
    // gRPC pages the same way.
    let mut client = NodeReportsClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = client
            .list_nodes(ListNodesRequest {
                page_size: 30,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.nodes.len() <= 30);
        seen.extend(page.nodes.into_iter().map(|n| n.last.unwrap().node_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, want);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_table_refuses_new_nodes_and_forgets_silent_ones() {
    let s = start(SchedulerConfig {
        stale_after: Duration::from_millis(500),
        limits: Limits {
            max_nodes: 3,
            forget_after: Duration::from_secs(5),
            ..Limits::default()
        },
        ..SchedulerConfig::default()
    })
    .await;
    for n in ["a", "b"] {
        assert_eq!(
            send_one(&s, report(n, 1, (1_000, GIB), (0, 0), 5.0))
                .await
                .unwrap(),
            1
        );
    }
    // "c" was last heard of 10 minutes ago (the scheduler's clock): the next sweep drops it.
    let long_ago = Instant::now()
        .checked_sub(Duration::from_secs(600))
        .expect("uptime over 10 minutes");
    s.table
        .ingest(report("c", 1, (1_000, GIB), (0, 0), 5.0), long_ago)
        .unwrap();
    // Full now, until the sweep runs; "a" keeps reporting meanwhile.
    let st = send_one(&s, report("d", 1, (1_000, GIB), (0, 0), 5.0)).await;
    if let Err(st) = &st {
        assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
        assert!(st.message().contains("--max-nodes"), "{}", st.message());
    }
    assert_eq!(
        send_one(&s, report("a", 2, (1_000, GIB), (0, 0), 5.0))
            .await
            .unwrap(),
        2
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.table.lookup("c", Instant::now()).is_some() {
        assert!(Instant::now() < deadline, "c not forgotten within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        send_one(&s, report("d", 1, (1_000, GIB), (0, 0), 5.0))
            .await
            .unwrap(),
        1
    );
    let st = send_one(&s, report("e", 1, (1_000, GIB), (0, 0), 5.0))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    let mut http = HttpConnection::connect(s.http_addr).await.unwrap();
    let page = String::from_utf8(http.get("/metrics").await.unwrap().body).unwrap();
    assert!(
        page.lines()
            .any(|l| l.starts_with("colo_scheduler_nodes_forgotten_total ")),
        "{page}"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_and_oversize_reports_are_refused() {
    let s = start(SchedulerConfig::default()).await;
    let refused = |r: NodeReport| send_one(&s, r);
    let st = refused(report(&"n".repeat(3 << 20), 1, (0, 0), (0, 0), 0.0))
        .await
        .unwrap_err();
    // A 3 MiB name is over the 16 KiB message limit before the name check sees it.
    assert_eq!(st.code(), tonic::Code::OutOfRange, "{st:?}");
    let st = refused(report(&"n".repeat(254), 1, (0, 0), (0, 0), 0.0))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    assert!(st.message().contains("at most 253"), "{}", st.message());
    let st = refused(report("Node_7", 1, (0, 0), (0, 0), 0.0))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    let st = refused(report("n", 1, (0, 0), (0, 0), f64::NAN))
        .await
        .unwrap_err();
    assert!(
        st.message().contains("interference.score = NaN"),
        "{}",
        st.message()
    );
    let mut future = report("n", 1, (0, 0), (0, 0), 0.0);
    future.agent_start_unix_ms = i64::MAX;
    let st = refused(future).await.unwrap_err();
    assert!(
        st.message().contains("--max-clock-skew"),
        "{}",
        st.message()
    );
    assert!(s.table.lookup("n", Instant::now()).is_none());
    s.shutdown().await.unwrap();
}
