//! The container sandbox's benchmark: Submit → Running for container jobs and workload-guest
//! jobs side by side (submitted alternately, one at a time), then the agent and the per-job
//! monitors' CPU and memory with the container jobs running (`sleep`) and the VMs gone.
//!
//! ```text
//! cargo build --release -p colo-agent -p colo-vmm --examples --bins
//! sudo target/release/examples/container_bench     # as root, with /dev/kvm, runc, busybox-static
//! ```
//!
//! Env: `BENCH_JOBS` (50 of each), `BENCH_IDLE_SECONDS` (30). It runs a real colo-agent (the
//! release binaries next to this example) in its own cgroup subtree and state directory, and
//! prints a markdown table.

mod bench_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench_common::{connect_when_up, env_or, percentile, spawn_agent, thread_cpu_ns, wait_state};
use colo_agent::jobs::procinfo;
use colo_proto::agent as pb;

/// Proportional set size of a process (`Pss:` of `/proc/<pid>/smaps_rollup`), bytes.
fn pss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("Pss:")
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        * 1024
}

fn container_spec(key: &str, image: &Path) -> pb::JobSpec {
    pb::JobSpec {
        idempotency_key: key.into(),
        sandbox: Some(pb::job_spec::Sandbox::Container(pb::ContainerJob {
            image: image.display().to_string(),
            command: "sleep".into(),
            args: vec!["3600".into()],
            ..Default::default()
        })),
        vcpus: 1,
        memory_mib: 16,
        ..Default::default()
    }
}

fn workload_spec(key: &str) -> pb::JobSpec {
    pb::JobSpec {
        idempotency_key: key.into(),
        sandbox: Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
            hold_seconds: 3600,
            ..Default::default()
        })),
        vcpus: 1,
        memory_mib: 16,
        ..Default::default()
    }
}

fn main() {
    let jobs = env_or("BENCH_JOBS", 50) as usize;
    let idle_s = env_or("BENCH_IDLE_SECONDS", 30);
    let bin_dir: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
        .expect("target dir");
    let agent_bin = bin_dir.join("colo-agent");
    let vmm_bin = bin_dir.join("colo-vmm");
    let monitor_bin = bin_dir.join("colo-monitor");
    for b in [&agent_bin, &vmm_bin, &monitor_bin] {
        assert!(
            b.is_file(),
            "{} missing: cargo build --release -p colo-agent -p colo-vmm --bins",
            b.display()
        );
    }
    let busybox = colo_testkit::busybox_or_skip("container_bench").expect("busybox-static");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cg = colo_testkit::TestCgroup::new(&["pids", "cpu", "cpuacct", "blkio"], 32 << 30)
        .expect("test cgroup (run as root)");
    let dir = tempfile::Builder::new()
        .prefix("colo-container-bench")
        .tempdir()
        .unwrap();
    let image = dir.path().join("images").join("busybox");
    colo_testkit::busybox_rootfs(&busybox, &image, &[]).expect("busybox rootfs");
    let socket = dir.path().join("agent.sock");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "cgroup:\n  root: /{}\noffline:\n  state_dir: {}\n  vmm: {}\n  memory: 16MiB\n  image_roots: [{{path: {}}}]\n  budget:\n    cpu: {}\n  container:\n    runtime_root: {}\n    monitor: {}\napi:\n  socket: {}\nmetrics:\n  listen: null\npolicy:\n  paths: []\n",
            cg.name(),
            dir.path().join("state").display(),
            vmm_bin.display(),
            dir.path().join("images").display(),
            2 * jobs + 8,
            dir.path().join("runc").display(),
            monitor_bin.display(),
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
    let r = rt.block_on(async {
        let mut c = connect_when_up(&socket).await;
        let (mut lat_ctr, mut lat_vm) = (Vec::new(), Vec::new());
        let (mut ctr_ids, mut vm_ids) = (Vec::new(), Vec::new());
        for i in 0..jobs {
            for container in [true, false] {
                let spec = if container {
                    container_spec(&format!("ctr-{i}"), &image)
                } else {
                    workload_spec(&format!("vm-{i}"))
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
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                if container {
                    lat_ctr.push(ms);
                    ctr_ids.push(j.id);
                } else {
                    lat_vm.push(ms);
                    vm_ids.push(j.id);
                }
            }
        }
        for id in &vm_ids {
            c.cancel_job(pb::CancelJobRequest {
                id: id.clone(),
                reason: "bench: VMs done".into(),
            })
            .await
            .unwrap();
        }
        for id in &vm_ids {
            wait_state(&mut c, id, |s| s.is_terminal()).await;
        }
        let mut monitors = Vec::new();
        for id in &ctr_ids {
            let j = c
                .get_job(pb::GetJobRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            monitors.push(j.vmm_pid);
        }
        // Settle (the runtime's idle blocking threads exit after 10 s), then measure.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let all: Vec<u32> = std::iter::once(pid)
            .chain(monitors.iter().copied())
            .collect();
        let ns = |pids: &[u32]| pids.iter().map(|p| thread_cpu_ns(*p)).sum::<u64>();
        let (a0, m0) = (ns(&[pid]), ns(&monitors));
        let t0 = Instant::now();
        let (mut rss_max, mut pss_max) = (0u64, 0u64);
        while t0.elapsed() < Duration::from_secs(idle_s) {
            let rss: u64 = all
                .iter()
                .map(|p| procinfo::rss_bytes(*p).unwrap_or(0))
                .sum();
            let pss: u64 = all.iter().map(|p| pss_bytes(*p)).sum();
            rss_max = rss_max.max(rss);
            pss_max = pss_max.max(pss);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let window = t0.elapsed().as_secs_f64();
        let (a1, m1) = (ns(&[pid]), ns(&monitors));
        let agent_cpu = a1.saturating_sub(a0) as f64 / 1e9 / window * 100.0;
        let monitors_cpu = m1.saturating_sub(m0) as f64 / 1e9 / window * 100.0;
        let agent_rss = procinfo::rss_bytes(pid).unwrap_or(0);
        let monitor_rss: Vec<u64> = monitors
            .iter()
            .map(|p| procinfo::rss_bytes(*p).unwrap_or(0))
            .collect();
        let monitor_pss: Vec<u64> = monitors.iter().map(|p| pss_bytes(*p)).collect();
        let tc = Instant::now();
        for id in &ctr_ids {
            c.cancel_job(pb::CancelJobRequest {
                id: id.clone(),
                reason: "bench done".into(),
            })
            .await
            .unwrap();
        }
        for id in &ctr_ids {
            wait_state(&mut c, id, |s| s.is_terminal()).await;
        }
        lat_ctr.sort_by(f64::total_cmp);
        lat_vm.sort_by(f64::total_cmp);
        (
            lat_ctr,
            lat_vm,
            (agent_cpu, monitors_cpu),
            (rss_max, pss_max, agent_rss),
            (monitor_rss, monitor_pss),
            tc.elapsed(),
        )
    });
    // SAFETY: kill(2) on the agent this benchmark started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let (lat_ctr, lat_vm, (agent_cpu, monitors_cpu), (rss_max, pss_max, agent_rss), mon, cancel) =
        r;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    println!(
        "container sandbox benchmark ({jobs} container jobs and {jobs} workload-guest jobs; load average at start: {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| metric | container | workload guest (MicroVM) | target |");
    println!("|---|---|---|---|");
    for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
        println!(
            "| Submit → Running, {name} | {:.1} ms | {:.1} ms | {} |",
            percentile(&lat_ctr, p),
            percentile(&lat_vm, p),
            if p == 50.0 { "container ≤ 50 ms" } else { "" }
        );
    }
    println!(
        "| Submit → Running, max | {:.1} ms | {:.1} ms | |",
        lat_ctr.last().copied().unwrap_or(0.0),
        lat_vm.last().copied().unwrap_or(0.0)
    );
    println!();
    println!("With {jobs} container jobs running (`sleep`), over {idle_s} s:");
    println!();
    println!("| metric | value | target |");
    println!("|---|---|---|");
    println!(
        "| CPU: agent + {jobs} monitors (schedstat of their threads) | {:.3} % of a core (agent {agent_cpu:.3}, monitors {monitors_cpu:.3}) | ≤ 1 % |",
        agent_cpu + monitors_cpu
    );
    println!(
        "| memory: agent + {jobs} monitors, PSS (max) | {:.1} MiB | ≤ 30 MiB |",
        mib(pss_max)
    );
    println!(
        "| memory: agent + {jobs} monitors, RSS summed (max; counts shared pages once per process) | {:.1} MiB | |",
        mib(rss_max)
    );
    println!("| agent RSS at the end | {:.1} MiB | |", mib(agent_rss));
    println!(
        "| one monitor: RSS / PSS (mean) | {:.2} / {:.2} MiB | |",
        mean(&mon.0) / (1 << 20) as f64,
        mean(&mon.1) / (1 << 20) as f64
    );
    println!(
        "| cancel all {jobs} containers → all ended | {:.2} s | |",
        cancel.as_secs_f64()
    );
}
