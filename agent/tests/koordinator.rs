//! The Koordinator `NodeMetric` view of a real colo-agent: served on the metrics listener
//! without `scheduler.endpoint`, and its `nodeUsage` is the whole node's (busy CPU of every
//! process, memory in use), not only what declared online services use.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Options, TestAgent};

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Parses a Kubernetes CPU quantity in millicores (`"1250m"`).
fn millicores(q: &serde_json::Value) -> u64 {
    q.as_str()
        .and_then(|s| s.strip_suffix('m'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a millicore quantity: {q}"))
}

#[test]
fn nodemetric_is_served_without_a_scheduler_and_counts_the_whole_node() {
    let test = "nodemetric_is_served_without_a_scheduler_and_counts_the_whole_node";
    if !colo_testkit::root_or_skip(test) {
        return;
    }
    let _lock = colo_testkit::host_lock();
    // No services declared and no scheduler.endpoint: before, this view was a 404 and its
    // usage would have read 0m whatever the node did.
    let agent = TestAgent::start(Options {
        metrics: true,
        ..Options::default()
    });
    let yaml = std::fs::read_to_string(&agent.config).unwrap();
    assert!(!yaml.contains("scheduler:"), "no reporter here: {yaml}");
    let addr = agent.metrics_addr.unwrap();

    // Load no service owns: one spinning thread.
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    };
    // Let a 1 s summary cover the spinner, then read the view.
    let t0 = Instant::now();
    let v = loop {
        let (status, body) = get(addr, "/koordinator/nodemetric");
        if status == 200 && t0.elapsed() > Duration::from_millis(2500) {
            break serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert!(
            status == 200 || status == 503,
            "{status} {body}\n{}",
            agent.log_text()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no NodeMetric within 15 s ({status} {body}):\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();

    assert_eq!(v["apiVersion"], "slo.koordinator.sh/v1alpha1");
    assert_eq!(v["kind"], "NodeMetric");
    assert_eq!(v["metadata"]["name"], "test-node");
    let usage = &v["status"]["nodeMetric"]["nodeUsage"]["resources"];
    let cpu = millicores(&usage["cpu"]);
    // The spinner alone keeps most of a core busy (shared with whatever else the host runs).
    assert!(
        cpu >= 400,
        "nodeUsage cpu {cpu}m with a spinning thread: {v}"
    );
    let memory: u64 = usage["memory"].as_str().unwrap().parse().unwrap();
    let total: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024;
    assert!(
        memory > 0 && memory < total,
        "nodeUsage memory {memory} of {total}: {v}"
    );
    let reclaim = &v["status"]["prodReclaimableMetric"]["resource"]["resources"];
    assert!(millicores(&reclaim["cpu"]) > 0, "{v}");
    assert!(v["status"]["updateTime"].as_str().unwrap().ends_with('Z'));
}
