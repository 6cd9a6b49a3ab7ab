//! The `colo-scheduler` binary: starts, serves, and stops cleanly on SIGTERM; bad flags are
//! refused with a message.

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
