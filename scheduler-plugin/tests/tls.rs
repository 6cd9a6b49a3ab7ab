//! Mutual TLS on both ports of the real binary, over real sockets: a report is accepted only for
//! the node the agent's certificate names; clients without a certificate, or with one from
//! another CA, are refused on the gRPC and the HTTPS port; kube-scheduler's certificate gets the
//! extender verbs; SIGHUP re-reads the files.

mod common;

use std::time::Duration;

use colo_proto::report::node_reports_client::NodeReportsClient;
use colo_proto::report::{NodeReport, ReportAck};
use common::process::SchedulerProcess;
use common::tls::{Pki, grpc_client, https};
use common::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn unix_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A report from a live agent: timestamps now.
fn live(name: &str, seq: u64, score: f64) -> NodeReport {
    let mut r = report(name, seq, (8_000, 32 * GIB), (0, 0), score);
    r.timestamp_unix_ms = unix_ms();
    r.agent_start_unix_ms = unix_ms() - 60_000;
    r
}

/// Sends `reports` on one stream; the acks, or the status that ended the stream.
async fn send(
    client: &mut NodeReportsClient<Channel>,
    reports: Vec<NodeReport>,
) -> Result<Vec<u64>, tonic::Status> {
    let n = reports.len();
    let (tx, rx) = mpsc::channel(16);
    for r in reports {
        tx.send(r).await.unwrap();
    }
    let mut acks = client
        .stream_reports(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut got = Vec::new();
    while got.len() < n {
        let ack: Option<ReportAck> = tokio::time::timeout(Duration::from_secs(10), acks.message())
            .await
            .expect("an answer within 10 s")?;
        got.push(ack.expect("an ack or a status").seq);
    }
    Ok(got)
}

fn start(pki: &Pki) -> SchedulerProcess {
    let flags = pki.flags();
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    SchedulerProcess::start(&args)
}

#[tokio::test]
async fn a_report_must_name_the_node_of_its_certificate() {
    let pki = Pki::new();
    let s = start(&pki);
    let ca = &pki.ca.ca.cert;

    let mut node7 = grpc_client(s.grpc_addr, ca, Some(&pki.node7))
        .await
        .unwrap();
    assert_eq!(
        send(
            &mut node7,
            vec![live("node-7", 1, 10.0), live("node-7", 2, 10.0)]
        )
        .await
        .unwrap(),
        [1, 2]
    );
    // The same agent speaking for another node: refused, naming both.
    let status = send(&mut node7, vec![live("node-2", 1, 0.0)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    assert!(
        msg.contains(r#""node-2""#) && msg.contains(r#"CN "node-7""#),
        "{msg}"
    );
    println!("refused: {msg}");
    // The spoof that used to win /prioritize: a start time far in the future.
    let mut spoof = live("node-7", 1, 0.0);
    spoof.agent_start_unix_ms = unix_ms() + 365 * 86_400_000;
    let status = send(&mut node7, vec![spoof]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("ahead of colo-scheduler's clock"));

    // A DNS subject alternative name counts as the certificate's name too.
    let mut node9 = grpc_client(s.grpc_addr, ca, Some(&pki.node9_san))
        .await
        .unwrap();
    assert_eq!(
        send(&mut node9, vec![live("node-9", 5, 80.0)])
            .await
            .unwrap(),
        [5]
    );
    let status = send(&mut node9, vec![live("node-7", 9, 0.0)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains(r#"DNS "node-9""#),
        "{}",
        status.message()
    );

    // kube-scheduler's certificate gets the extender over HTTPS: node-7 as it reported, node-2
    // unknown, nothing from the spoof.
    let mut kube = https(s.http_addr, ca, Some(&pki.kube)).await.unwrap();
    let body = format!(r#"{{"Pod":{BATCH_POD},"NodeNames":["node-7","node-2"]}}"#);
    let r = kube
        .post_json("/colo/prioritize", body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        text(&r),
        r#"[{"Host":"node-7","Score":7},{"Host":"node-2","Score":0}]"#
    );
    let r = kube.get("/nodes").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let names: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-7", "node-9"]);
    assert_eq!(v["nodes"][0]["seq"], 2);
    s.wait_for_log("report refused", Duration::from_secs(5));
}

/// Whether a fresh connection with `id` gets a report acknowledged.
async fn grpc_works(
    s: &SchedulerProcess,
    ca: &std::path::Path,
    id: Option<&colo_testkit::CertFiles>,
) -> Result<(), String> {
    let mut c = grpc_client(s.grpc_addr, ca, id)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    send(&mut c, vec![live("node-7", 1, 0.0)])
        .await
        .map(|_| ())
        .map_err(|e| format!("stream: {e}"))
}

/// Whether a fresh HTTPS connection with `id` gets `/healthz`.
async fn https_works(
    s: &SchedulerProcess,
    ca: &std::path::Path,
    id: Option<&colo_testkit::CertFiles>,
) -> Result<(), String> {
    let mut c = https(s.http_addr, ca, id)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let r = c
        .get("/healthz")
        .await
        .map_err(|e| format!("request: {e}"))?;
    if r.status == 200 {
        Ok(())
    } else {
        Err(format!("status {}", r.status))
    }
}

#[tokio::test]
async fn clients_without_a_certificate_from_the_ca_are_refused_on_both_ports() {
    let pki = Pki::new();
    let s = start(&pki);
    let ca = &pki.ca.ca.cert;
    grpc_works(&s, ca, Some(&pki.node7)).await.unwrap();
    https_works(&s, ca, Some(&pki.kube)).await.unwrap();
    // The client sees the server's alert (CertificateRequired, UnknownCA) or, when the close
    // overtakes it, a closed connection; the server counts each refusal either way.
    for (who, id) in [
        ("no certificate", None),
        ("another CA's", Some(&pki.stranger)),
    ] {
        let e = grpc_works(&s, ca, id).await.unwrap_err();
        println!("gRPC, {who}: {e}");
        let e = https_works(&s, ca, id).await.unwrap_err();
        println!("HTTPS, {who}: {e}");
    }
    // Plain HTTP to the TLS port gets no answer but a closed connection.
    let mut plain = colo_scheduler::http_client::HttpConnection::connect(s.http_addr)
        .await
        .unwrap();
    assert!(plain.get("/healthz").await.is_err());
    let metrics = https(s.http_addr, ca, Some(&pki.kube))
        .await
        .unwrap()
        .get("/metrics")
        .await
        .unwrap();
    let page = String::from_utf8(metrics.body).unwrap();
    for listener in ["grpc", "http"] {
        let prefix = format!(
            "colo_scheduler_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"refused\"}} "
        );
        let refused: Option<f64> = page
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok());
        // Two refused clients, and on HTTP the plain request too.
        assert!(
            refused.is_some_and(|n| n >= 2.0),
            "{listener}: {refused:?}\n{page}"
        );
    }
}

#[tokio::test]
async fn sighup_rotates_to_a_new_client_ca() {
    let pki = Pki::new();
    // The client CA file the scheduler reads; it starts as the trusted CA's.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("clients.crt");
    std::fs::copy(&pki.ca.ca.cert, &ca_file).unwrap();
    let mut flags = pki.flags();
    for f in flags.iter_mut().filter(|f| f.ends_with("colo-ca.crt")) {
        *f = ca_file.to_str().unwrap().to_owned();
    }
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = SchedulerProcess::start(&args);
    let server_ca = &pki.ca.ca.cert;
    grpc_works(&s, server_ca, Some(&pki.node7)).await.unwrap();
    assert!(
        grpc_works(&s, server_ca, Some(&pki.stranger))
            .await
            .is_err()
    );

    // Rotate: the other CA now signs agents' certificates.
    std::fs::copy(&pki.other.ca.cert, &ca_file).unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    s.wait_for_log("TLS files re-read for 2 port(s)", Duration::from_secs(5));
    grpc_works(&s, server_ca, Some(&pki.stranger))
        .await
        .unwrap();
    assert!(grpc_works(&s, server_ca, Some(&pki.node7)).await.is_err());

    // A broken file keeps what is in use.
    std::fs::write(&ca_file, "garbage\n").unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    s.wait_for_log(
        "the previous certificates stay in use",
        Duration::from_secs(5),
    );
    grpc_works(&s, server_ca, Some(&pki.stranger))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_cut_off() {
    let pki = Pki::new();
    let mut flags = pki.flags();
    flags.extend(["--header-read-timeout".to_owned(), "1s".to_owned()]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = SchedulerProcess::start(&args);
    let began = std::time::Instant::now();
    let mut silent = Vec::new();
    for i in 0..100 {
        let addr = if i % 2 == 0 { s.grpc_addr } else { s.http_addr };
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    for mut c in silent {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            use tokio::io::AsyncReadExt;
            while let Ok(n) = c.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a silent connection still open after 10 s");
    }
    println!(
        "100 silent connections to the TLS ports closed within {:?}",
        began.elapsed()
    );
    // The server counts a timeout just after it closes the connection: poll until the last
    // one is counted (a loaded host may take a moment).
    let want: Vec<String> = ["grpc", "http"]
        .iter()
        .map(|listener| {
            format!(
                "colo_scheduler_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"timeout\"}} 50"
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = https(s.http_addr, &pki.ca.ca.cert, Some(&pki.kube))
            .await
            .unwrap()
            .get("/metrics")
            .await
            .unwrap();
        let page = String::from_utf8(page.body).unwrap();
        let missing: Vec<&String> = want
            .iter()
            .filter(|series| !page.lines().any(|l| l == series.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} in\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
