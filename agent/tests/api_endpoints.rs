//! The agent's endpoints as an operator sees them: the Unix socket's permissions, the API over
//! TCP with TLS, and `/metrics` (every family documented, no node_exporter names, latencies as
//! histograms).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use colo_testkit::TestCa;
use common::{Options, TestAgent, root_guard};

#[test]
fn socket_permissions_metrics_and_tls() {
    let Some(_lock) = root_guard("socket_permissions_metrics_and_tls") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d, "colo-test");
    let server = ca.issue("agent", "localhost", &["DNS:localhost", "IP:127.0.0.1"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut agent = TestAgent::start(Options {
        metrics: true,
        ..Default::default()
    });
    // Restart with a TCP listener and a socket group.
    let yaml = std::fs::read_to_string(&agent.config).unwrap().replace(
        "api:\n",
        &format!(
            "api:\n  socket_group: root\n  tcp:\n    listen: 127.0.0.1:{port}\n    cert: {}\n    key: {}\n    insecure_any_client: true\n",
            server.cert.display(),
            server.key.display()
        ),
    );
    std::fs::write(&agent.config, yaml).unwrap();
    agent.terminate();
    agent.spawn();
    agent.wait_serving();

    let mode = std::fs::metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "socket mode with socket_group");

    // coloctl over TCP+TLS, verifying the agent's certificate against the test CA.
    let out = std::process::Command::new(colo_testkit::workspace_binary("coloctl"))
        .args([
            "--endpoint",
            &format!("https://localhost:{port}"),
            "--tls-ca",
        ])
        .arg(&ca.ca.cert)
        .args(["node", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node_name"], "test-node");
    // Without the CA the handshake fails.
    let out = std::process::Command::new(colo_testkit::workspace_binary("coloctl"))
        .args(["--endpoint", &format!("https://localhost:{port}"), "node"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the agent"));

    // /metrics over plain HTTP: every family has HELP, none takes node_exporter's own names,
    // latencies are histograms.
    let addr = agent.metrics_addr.unwrap();
    let scrape = || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        body
    };
    // The QoS loop's first ticks come right after the start; wait for its histogram.
    let t0 = Instant::now();
    let mut body = scrape();
    while !body.contains("# TYPE colo_qos_tick_seconds histogram") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no colo_qos_tick_seconds histogram in\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
        body = scrape();
    }
    for m in [
        "colo_jobs{state=\"running\"} 0",
        "colo_offline_budget_millicores 64000",
        "# TYPE colo_node_pressure_cpu_waiting_seconds_total counter",
        "colo_node_pressure_io_stalled_seconds_total ",
        "colo_agent_resident_bytes ",
        "colo_qos_tick_seconds_bucket{le=\"0.001\"} ",
        "colo_qos_tick_seconds_count ",
        concat!(
            "colo_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\"} 1"
        ),
    ] {
        assert!(body.contains(m), "missing {m:?} in\n{body}");
    }
    let families: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(families.len() >= 10, "{body}");
    for f in &families {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("# HELP {f} ")) && l.len() > f.len() + 8),
            "{f} has no HELP text in\n{body}"
        );
        assert!(!f.starts_with("node_"), "{f} takes node_exporter's name");
    }
    assert!(
        !body.lines().any(|l| l.starts_with("node_")),
        "node_exporter's names in\n{body}"
    );
    assert!(!body.contains(" summary\n"), "a summary in\n{body}");
}
