//! Shared by colo-scheduler's integration tests: a real server on loopback ports, and fleets of
//! node reports.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use colo_proto::report::{Interference, NodeReport, Resources};
use colo_scheduler::http_client::{HttpConnection, HttpResponse};
use colo_scheduler::{Running, SchedulerConfig};
use tokio::net::TcpListener;

pub const GIB: u64 = 1 << 30;

/// Starts colo-scheduler on ephemeral loopback ports.
pub async fn start(config: SchedulerConfig) -> Running {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    colo_scheduler::start(config, grpc, http).unwrap()
}

/// A report: 16 cores / 64 GiB capacity, the given batch budget, batch usage and score.
pub fn report(
    name: &str,
    seq: u64,
    reclaim: (u64, u64),
    offline: (u64, u64),
    score: f64,
) -> NodeReport {
    NodeReport {
        node_name: name.into(),
        seq,
        timestamp_unix_ms: 1_700_000_000_000,
        agent_version: "test".into(),
        capacity: Some(Resources {
            cpu_millicores: 16_000,
            memory_bytes: 64 * GIB,
        }),
        reclaimable: Some(Resources {
            cpu_millicores: reclaim.0,
            memory_bytes: reclaim.1,
        }),
        offline_usage: Some(Resources {
            cpu_millicores: offline.0,
            memory_bytes: offline.1,
        }),
        interference: Some(Interference {
            score,
            ..Default::default()
        }),
        agent_start_unix_ms: 1,
        ..Default::default()
    }
}

/// The synthetic fleet: `idle` and `mid` take a 1-core / 2 GiB batch pod; `busy` has too little
/// batch CPU left (preemption could help); `hot` refuses batch work (interference 85); `stale`
/// last reported 100 s ago (stale after 30 s); `ghost` never reported.
pub fn load_fleet(s: &Running) {
    let now = Instant::now();
    let t = &s.table;
    t.ingest(report("idle", 1, (12_000, 48 * GIB), (0, 0), 5.0), now)
        .unwrap();
    t.ingest(
        report("busy", 1, (3_000, 48 * GIB), (2_500, 4 * GIB), 20.0),
        now,
    )
    .unwrap();
    t.ingest(report("hot", 1, (12_000, 48 * GIB), (0, 0), 85.0), now)
        .unwrap();
    let long_ago = now
        .checked_sub(Duration::from_secs(100))
        .expect("uptime over 100 s");
    t.ingest(
        report("stale", 1, (12_000, 48 * GIB), (0, 0), 5.0),
        long_ago,
    )
    .unwrap();
    t.ingest(
        report("mid", 1, (8_000, 32 * GIB), (2_000, 4 * GIB), 40.0),
        now,
    )
    .unwrap();
}

/// The fleet's config: stale after 30 s.
pub fn fleet_config() -> SchedulerConfig {
    SchedulerConfig {
        stale_after: Duration::from_secs(30),
        ..SchedulerConfig::default()
    }
}

pub async fn post(s: &Running, path: &str, body: &str) -> HttpResponse {
    let mut c = HttpConnection::connect(s.http_addr).await.unwrap();
    c.post_json(path, body.as_bytes()).await.unwrap()
}

pub fn text(r: &HttpResponse) -> &str {
    std::str::from_utf8(&r.body).unwrap()
}

/// A batch pod asking 1 core and 2 GiB of batch resources.
pub const BATCH_POD: &str = r#"{"metadata":{"name":"job-1","namespace":"etl","uid":"p-1"},"spec":{"containers":[{"name":"main","resources":{"requests":{"colo.io/batch-cpu":"1000","colo.io/batch-memory":"2Gi"},"limits":{"colo.io/batch-cpu":"1000","colo.io/batch-memory":"2Gi"}}}]}}"#;

/// An online pod colo does not touch.
pub const ONLINE_POD: &str = r#"{"metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","resources":{"requests":{"cpu":"2","memory":"1Gi"}}}]}}"#;

pub const FLEET: &str = r#"["idle","busy","hot","stale","ghost","mid"]"#;

pub mod process;
pub mod tls;
