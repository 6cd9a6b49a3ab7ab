//! `colo-loadgen`: open-loop HTTP load at a fixed rate, latency from each request's due time
//! (no coordinated omission); prints one JSON report.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use colo_bench::loadgen::{LoadSpec, run};

/// Open-loop HTTP/1.1 load at a fixed rate.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server address (host:port, numeric).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// Seconds of load (warm-up included).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds at the start not recorded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Switch to --step-rate this many seconds after the start.
    #[arg(long)]
    step_at: Option<f64>,
    /// Rate after the step.
    #[arg(long, default_value_t = 0.0)]
    step_rate: f64,
    /// Record completions per bucket of this many ms.
    #[arg(long)]
    timeline_ms: Option<u64>,
}

fn main() {
    let a = Args::parse();
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let spec = LoadSpec {
        addr: a.addr,
        path: a.path,
        rate: a.rate,
        duration: secs(a.duration),
        warmup: secs(a.warmup),
        connections: a.connections,
        step_at: a.step_at.map(secs),
        step_rate: a.step_rate,
        timeline_bucket: a.timeline_ms.map(Duration::from_millis),
    };
    match run(&spec) {
        Ok(r) => match serde_json::to_string(&r) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("colo-loadgen: {e}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("colo-loadgen: {e}");
            std::process::exit(1);
        }
    }
}
