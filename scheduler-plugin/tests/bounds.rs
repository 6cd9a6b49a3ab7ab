//! The real binary under the floods that used to take it over, on its plain loopback ports (no
//! certificate binds names there, so the bounds alone must hold): 300,000 node names against the
//! node cap, 2,000 half-open connections against the header timeout, oversize, slow and
//! concurrent large bodies against the body limits. Each prints what it measured.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use colo_proto::report::node_reports_client::NodeReportsClient;
use colo_scheduler::http_client::HttpConnection;
use common::process::{SchedulerProcess, raise_open_files};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::wrappers::ReceiverStream;

const MIB: u64 = 1 << 10; // in KiB, as /proc reports

async fn metric(s: &SchedulerProcess, series: &str) -> Option<f64> {
    let mut c = HttpConnection::connect(s.http_addr).await.unwrap();
    let page = String::from_utf8(c.get("/metrics").await.unwrap().body).unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn long_name(i: usize) -> String {
    // 253 bytes, the longest name Kubernetes allows: the most memory a name can cost.
    format!("{i:07}-{}", "n".repeat(245))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_thousand_node_names_stay_under_the_cap() {
    const NAMES: usize = 300_000;
    const CAP: usize = 10_000;
    let _lock = colo_testkit::host_lock();
    // Stale after 50 minutes (forgotten after the default hour): on a loaded machine the flood
    // can take many minutes, and the names stored first must still count as fresh at the end.
    let s = SchedulerProcess::start(&["--max-nodes", "10000", "--stale-after", "50m"]);
    let before = s.rss_kib();
    let began = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let (stored, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = NodeReportsClient::connect(format!("http://{}", s.grpc_addr))
            .await
            .unwrap();
        for _ in 0..32 {
            let (mut client, next) = (client.clone(), Arc::clone(&next));
            let (stored, refused) = (Arc::clone(&stored), Arc::clone(&refused));
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= NAMES {
                        return;
                    }
                    // One stream per name: a refusal ends its stream.
                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                    tx.send(report(&long_name(i), 1, (1_000, GIB), (0, 0), 5.0))
                        .await
                        .unwrap();
                    let answer = async {
                        client
                            .stream_reports(ReceiverStream::new(rx))
                            .await?
                            .into_inner()
                            .message()
                            .await
                    };
                    match answer.await {
                        Ok(Some(_)) => stored.fetch_add(1, Ordering::Relaxed),
                        Err(st) if st.code() == tonic::Code::ResourceExhausted => {
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("name {i}: {other:?}"),
                    };
                }
            }));
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    let took = began.elapsed();
    let after = s.rss_kib();
    let (stored, refused) = (
        stored.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    println!(
        "{NAMES} names of 253 bytes in {:.1} s: {stored} stored, {refused} refused \
         (RESOURCE_EXHAUSTED); scheduler RSS {} MiB before, {} MiB after (+{} MiB), peak {} MiB",
        took.as_secs_f64(),
        before / MIB,
        after / MIB,
        after.saturating_sub(before) / MIB,
        s.peak_rss_kib() / MIB
    );
    assert_eq!(stored, CAP);
    assert_eq!(refused, NAMES - CAP);
    assert_eq!(
        metric(&s, "colo_scheduler_nodes{state=\"fresh\"}").await,
        Some(CAP as f64)
    );
    assert_eq!(
        metric(
            &s,
            "colo_scheduler_reports_ignored_total{reason=\"table_full\"}"
        )
        .await,
        Some((NAMES - CAP) as f64)
    );
    // 10,000 nodes of 253-byte names need some 15 MiB; streams and allocator slack come on top.
    // Without the cap, 300,000 names of 1 KB took 909 MiB.
    assert!(
        after.saturating_sub(before) < 128 * MIB,
        "RSS grew {} MiB",
        after.saturating_sub(before) / MIB
    );
}

/// Reads until the server closes the connection; the bytes it sent first.
async fn until_closed(c: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_by_the_header_timeout() {
    const CONNS: usize = 2_000;
    raise_open_files(8_192);
    let s = SchedulerProcess::start(&["--header-read-timeout", "1s"]);
    let fds_idle = s.open_fds();
    let began = Instant::now();
    let mut conns = Vec::new();
    for i in 0..CONNS {
        // Three in four to the extender port: half of them say nothing, half start a request
        // whose header never ends. One in four to the report port, saying nothing or only part
        // of the HTTP/2 preface.
        let grpc = i % 4 == 3;
        let mut c = TcpStream::connect(if grpc { s.grpc_addr } else { s.http_addr })
            .await
            .unwrap();
        if grpc && i % 8 == 7 {
            c.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        } else if !grpc && i % 2 == 1 {
            c.write_all(b"POST /colo/filter HTTP/1.1\r\nHost: colo\r\nX-Slow: ")
                .await
                .unwrap();
        }
        conns.push(c);
    }
    let opened = began.elapsed();
    let fds_held = s.open_fds();
    let mut closing = Vec::new();
    for mut c in conns {
        closing.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(20), until_closed(&mut c))
                .await
                .is_ok()
        }));
    }
    let mut closed = 0;
    for c in closing {
        closed += usize::from(c.await.unwrap());
    }
    let took = began.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_after = s.open_fds();
    println!(
        "{CONNS} half-open connections (1,500 HTTP, 500 gRPC; opened in {:.2} s) with \
         --header-read-timeout 1s: {closed} closed by the server {:.2} s after the first \
         opened; scheduler file descriptors {fds_idle} idle, {fds_held} after opening, \
         {fds_after} after",
        opened.as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(closed, CONNS);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(fds_after <= fds_idle + 10, "{fds_after} fds left");
    // Connections that keep their promises are served as before.
    let mut c = HttpConnection::connect(s.http_addr).await.unwrap();
    assert_eq!(c.get("/healthz").await.unwrap().body, b"ok\n");
    let mut client = NodeReportsClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let nodes = client
        .list_nodes(colo_proto::report::ListNodesRequest::default())
        .await
        .unwrap();
    assert!(nodes.into_inner().nodes.is_empty());
}

/// Sends `head` then `body`, returns the response's status line.
async fn status_of(s: &SchedulerProcess, head: &str, body: &[u8]) -> String {
    let mut c = TcpStream::connect(s.http_addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let _ = c.write_all(body).await;
    let got = until_closed(&mut c).await;
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn oversize_and_slow_bodies_are_refused() {
    let s = SchedulerProcess::start(&[
        "--max-request-bytes",
        "1048576",
        "--max-body-bytes-in-flight",
        "1048576",
        "--body-read-timeout",
        "1s",
    ]);
    // Declared too large: refused before a byte of the body is read.
    let t = Instant::now();
    let st = status_of(
        &s,
        "POST /colo/filter HTTP/1.1\r\nHost: x\r\nContent-Length: 62914560\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(st, "HTTP/1.1 413 Payload Too Large");
    println!("60 MiB declared: {st} in {:?}", t.elapsed());
    // Chunked, no length declared, running past the limit.
    let mut body = Vec::new();
    for _ in 0..3 {
        body.extend_from_slice(format!("{:x}\r\n", 512 << 10).as_bytes());
        body.extend(std::iter::repeat_n(b' ', 512 << 10));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let st = status_of(
        &s,
        "POST /colo/prioritize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &body,
    )
    .await;
    assert_eq!(st, "HTTP/1.1 413 Payload Too Large");
    // A body that stops coming: 408 once the body timeout passes, and the connection closed.
    let t = Instant::now();
    let head = "POST /colo/filter HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    let slow = status_of(&s, head, b"{\"Pod\":").await;
    assert_eq!(slow, "HTTP/1.1 408 Request Timeout");
    println!("a body that stops: {slow} after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5));
    for reason in ["too_large", "timeout"] {
        let n = metric(
            &s,
            &format!("colo_scheduler_http_bodies_refused_total{{reason=\"{reason}\"}}"),
        )
        .await;
        assert!(n.is_some_and(|n| n >= 1.0), "{reason}: {n:?}");
    }
    // And a request within the limits is answered.
    let ok = post_to(&s, &format!(r#"{{"Pod":{BATCH_POD},"NodeNames":["a"]}}"#)).await;
    assert_eq!(ok.status, 200);
}

async fn post_to(s: &SchedulerProcess, body: &str) -> colo_scheduler::http_client::HttpResponse {
    let mut c = HttpConnection::connect(s.http_addr).await.unwrap();
    c.post_json("/colo/filter", body.as_bytes()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_bodies_share_a_bounded_budget() {
    const BODIES: usize = 12;
    const SIZE: usize = 60 << 20;
    let _lock = colo_testkit::host_lock();
    // The defaults: 64 MiB a body, 160 MiB of bodies at once.
    let s = SchedulerProcess::start(&[]);
    let before = s.rss_kib();
    let body: Arc<Vec<u8>> = Arc::new(vec![b'x'; SIZE]);
    let began = Instant::now();
    let mut sends = Vec::new();
    for _ in 0..BODIES {
        let (addr, body) = (s.http_addr, Arc::clone(&body));
        sends.push(tokio::spawn(async move {
            let mut c = HttpConnection::connect(addr).await.unwrap();
            c.post_json("/colo/filter", &body).await.unwrap().status
        }));
    }
    let mut statuses = Vec::new();
    for t in sends {
        statuses.push(t.await.unwrap());
    }
    let took = began.elapsed();
    let peak = s.peak_rss_kib();
    println!(
        "{BODIES} concurrent bodies of 60 MiB in {:.1} s, statuses {statuses:?}; scheduler RSS \
         {} MiB before, peak {} MiB (+{} MiB)",
        took.as_secs_f64(),
        before / MIB,
        peak / MIB,
        peak.saturating_sub(before) / MIB
    );
    // Each is read (two at a time) and answered: not JSON, so 200 with Error set.
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        peak.saturating_sub(before) < 512 * MIB,
        "peak RSS grew {} MiB",
        peak.saturating_sub(before) / MIB
    );
}
