//! The agent's benchmark: Submit → Running latency over 50 jobs, then the agent's RSS and CPU
//! with those 50 VMs idle (workload guests in `hold`, idling in `hlt`).
//!
//! ```text
//! cargo build --release -p colo-agent -p colo-vmm --examples --bins
//! sudo target/release/examples/agent_bench        # as root, with /dev/kvm; load < 1
//! ```
//!
//! Env: `BENCH_JOBS` (50), `BENCH_IDLE_SECONDS` (30). It runs a real colo-agent (the release
//! binary next to this example) in its own cgroup subtree and state directory, and prints a
//! markdown table.

mod bench_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench_common::{connect_when_up, env_or, percentile, spawn_agent, thread_cpu_ns, wait_state};
use colo_agent::jobs::procinfo;
use colo_proto::agent as pb;

fn main() {
    let jobs = env_or("BENCH_JOBS", 50) as usize;
    let idle_s = env_or("BENCH_IDLE_SECONDS", 30);
    let bin_dir: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
        .expect("target dir");
    let agent_bin = bin_dir.join("colo-agent");
    let vmm_bin = bin_dir.join("colo-vmm");
    for b in [&agent_bin, &vmm_bin] {
        assert!(
            b.is_file(),
            "{} missing: cargo build --release -p colo-agent -p colo-vmm",
            b.display()
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cg = colo_testkit::TestCgroup::new(&["pids", "cpu", "cpuacct", "blkio"], 16 << 30)
        .expect("test cgroup (run as root)");
    let dir = tempfile::Builder::new()
        .prefix("colo-agent-bench")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("agent.sock");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "cgroup:\n  root: /{}\noffline:\n  state_dir: {}\n  vmm: {}\n  memory: 16MiB\n  budget:\n    cpu: {}\napi:\n  socket: {}\nmetrics:\n  listen: null\npolicy:\n  paths: []\n",
            cg.name(),
            dir.path().join("state").display(),
            vmm_bin.display(),
            jobs + 8,
            socket.display()
        ),
    )
    .unwrap();
    let mut agent = spawn_agent(&agent_bin, &config, &dir.path().join("agent.log"));
    let pid = agent.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let mut c = connect_when_up(&socket).await;
        let mut lat = Vec::new();
        let mut ids = Vec::new();
        for i in 0..jobs {
            let spec = pb::JobSpec {
                idempotency_key: format!("bench-{i}"),
                sandbox: Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
                    hold_seconds: 3600,
                    ..Default::default()
                })),
                vcpus: 1,
                memory_mib: 16,
                ..Default::default()
            };
            let t0 = Instant::now();
            let j = c
                .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
                .await
                .expect("submit")
                .into_inner()
                .job
                .unwrap();
            let r = wait_state(&mut c, &j.id, |s| {
                s == pb::JobState::Running || s.is_terminal()
            })
            .await;
            assert_eq!(r.state, pb::JobState::Running as i32, "{r:?}");
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            ids.push(j.id);
        }
        // 50 idle VMs: settle (the runtime's idle blocking threads exit after 10 s), then
        // measure the agent over the window.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let hz = procinfo::clock_ticks_per_second() as f64;
        let ns0 = thread_cpu_ns(pid);
        let (t0, c0) = (Instant::now(), procinfo::cpu_ticks(pid).unwrap());
        let mut rss_max = 0u64;
        while t0.elapsed() < Duration::from_secs(idle_s) {
            rss_max = rss_max.max(procinfo::rss_bytes(pid).unwrap());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let c1 = procinfo::cpu_ticks(pid).unwrap();
        let ns1 = thread_cpu_ns(pid);
        let window = t0.elapsed().as_secs_f64();
        let cpu_pct = (c1 - c0) as f64 / hz / window * 100.0;
        let cpu_pct_ns = ns1.saturating_sub(ns0) as f64 / 1e9 / window * 100.0;
        let rss_end = procinfo::rss_bytes(pid).unwrap();
        let threads = procinfo::threads(pid).map(|t| t.len()).unwrap_or(0);
        let mut vmm_rss = Vec::new();
        for id in &ids {
            let j = c
                .get_job(pb::GetJobRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            if let Ok(r) = procinfo::rss_bytes(j.vmm_pid) {
                vmm_rss.push(r as f64 / (1 << 20) as f64);
            }
        }
        // Cancel them all.
        let tc = Instant::now();
        for id in &ids {
            c.cancel_job(pb::CancelJobRequest {
                id: id.clone(),
                reason: "bench done".into(),
            })
            .await
            .unwrap();
        }
        for id in &ids {
            wait_state(&mut c, id, |s| s.is_terminal()).await;
        }
        let cancel_all = tc.elapsed();
        lat.sort_by(f64::total_cmp);
        (
            lat,
            (cpu_pct, cpu_pct_ns),
            rss_max,
            rss_end,
            threads,
            vmm_rss,
            cancel_all,
        )
    });
    // SAFETY: kill(2) on the agent this benchmark started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let (lat, (cpu_pct, cpu_pct_ns), rss_max, rss_end, threads, vmm_rss, cancel_all) = result;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let vmm_mean = vmm_rss.iter().sum::<f64>() / vmm_rss.len().max(1) as f64;
    println!(
        "colo-agent benchmark ({jobs} jobs; load average at start: {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| metric | value | target |");
    println!("|---|---|---|");
    println!(
        "| Submit → Running, p50 ({jobs} jobs, one at a time) | {:.1} ms | |",
        percentile(&lat, 50.0)
    );
    println!(
        "| Submit → Running, p99 | {:.1} ms | |",
        percentile(&lat, 99.0)
    );
    println!(
        "| Submit → Running, max | {:.1} ms | |",
        lat.last().copied().unwrap_or(0.0)
    );
    println!(
        "| agent RSS with {jobs} idle VMs (max over {idle_s} s) | {:.1} MiB | ≤ 30 MiB |",
        mib(rss_max)
    );
    println!(
        "| agent RSS at the end of the window | {:.1} MiB | |",
        mib(rss_end)
    );
    println!(
        "| agent CPU with {jobs} idle VMs ({idle_s} s, schedstat of its threads) | {cpu_pct_ns:.3} % of a core | ≤ 1 % |"
    );
    println!(
        "| agent CPU, same window (clock ticks of /proc/<pid>/stat) | {cpu_pct:.2} % of a core | |"
    );
    println!("| agent threads | {threads} | |");
    println!("| colo-vmm RSS per idle VM (mean) | {vmm_mean:.1} MiB | |");
    println!(
        "| cancel all {jobs} → all ended | {:.2} s | |",
        cancel_all.as_secs_f64()
    );
}
