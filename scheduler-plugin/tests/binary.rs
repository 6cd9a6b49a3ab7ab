//! The `colo-scheduler` binary: starts, serves, and stops cleanly on SIGTERM; bad flags are
//! refused with a message; plain ports stay on loopback unless explicitly let out.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colo_scheduler::http_client::HttpConnection;

#[tokio::test]
async fn serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let http_addr = loop {
        let line = lines.next().expect("a log line").unwrap();
        if let Some(rest) = line.split("http_addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let mut c = HttpConnection::connect(http_addr).await.unwrap();
    assert_eq!(c.get("/healthz").await.unwrap().body, b"ok\n");
    drop(c);

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "colo-scheduler did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

#[test]
fn bad_flags_are_refused_with_the_fix() {
    let out = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
        .args(["--refuse-above", "40", "--accept-below", "60"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("accept_below 60 is not below refuse_above 40"),
        "{err}"
    );
}

#[test]
fn a_bad_policy_file_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "apiVersion: colo/v1\nkind: Policy\nscoring:\n  peak_share: 3\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
        .arg("--policy")
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.yaml:4:15: scoring.peak_share"),
        "{err}"
    );
}

fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn plain_ports_stay_on_loopback_unless_let_out() {
    let err = refused(&["--http-listen", "0.0.0.0:0"]);
    assert!(
        err.contains("--http-listen 0.0.0.0:0 would serve plain TCP"),
        "{err}"
    );
    for fix in [
        "--tls-cert, --tls-key and --http-client-ca",
        "listen on 127.0.0.1",
        "--insecure-listen-any",
    ] {
        assert!(err.contains(fix), "{fix} in {err}");
    }
    let err = refused(&["--grpc-listen", "[::]:0"]);
    assert!(err.contains("--grpc-listen [::]:0"), "{err}");
    assert!(err.contains("--grpc-client-ca"), "{err}");
    let err = refused(&["--tls-cert", "/etc/colo/tls.crt"]);
    assert!(
        err.contains("--tls-cert and --tls-key go together"),
        "{err}"
    );
    let err = refused(&["--grpc-client-ca", "/etc/colo/ca.crt"]);
    assert!(err.contains("add --tls-cert and --tls-key"), "{err}");
    let err = refused(&["--forget-after", "1m", "--stale-after", "5m"]);
    assert!(err.contains("--forget-after"), "{err}");
    let err = refused(&[
        "--tls-cert",
        "/nonexistent/tls.crt",
        "--tls-key",
        "/nonexistent/tls.key",
        "--grpc-client-ca",
        "/nonexistent/ca.crt",
    ]);
    assert!(
        err.contains("/nonexistent/tls.crt (set by --tls-cert)"),
        "{err}"
    );

    // With the opt-in it serves, and says what it exposes.
    let s = common::process::SchedulerProcess::start(&[
        "--insecure-listen-any",
        "--http-listen",
        "0.0.0.0:0",
    ]);
    let warning = s.wait_for_log(
        "--insecure-listen-any: the extender (HTTP) port 0.0.0.0:",
        Duration::from_secs(5),
    );
    assert!(warning.contains("WARN"), "{warning}");
    // Only the default (loopback) gRPC port otherwise: nothing to warn about there.
    assert!(!s.log().iter().any(|l| l.contains("reports (gRPC) port")));
}
