//! The agent's own cost with many VMs and the QoS loop running: `n` one-vCPU VMs whose guests
//! idle in `hlt` (`hold`), an online service watched, the loop at its default 50 ms period; the
//! agent's CPU time (`/proc/<pid>/stat`) over a window and its RSS.
//!
//! The watched service must be one that serves: nginx gets a short check load before the VMs
//! start and after the window, and a check that breaks the validity rule ([`crate::validity`])
//! stops the bench, since an agent watching a dead service does less work than one watching a
//! live one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::headline::{ONLINE, ROOT, bench_policy};
use crate::host::{BenchCgroup, HostError, proc_cpu_ns, proc_rss};
use crate::loadgen::{self, LoadSpec};
use crate::services::{Agent, AgentSetup, Bins, Nginx, write_file};
use crate::validity::{self, load_summary, log_excerpt};

/// The check load's rate, requests/s: a liveness check, light beside the agent's own cost.
const CHECK_RATE: f64 = 200.0;

/// Runs a one-second check load on nginx (from this process) and applies the validity rule.
fn check_serves(nginx: &Nginx, when: &str) -> Result<(), HostError> {
    let log_from = nginx.error_log_len();
    let report = loadgen::run(&LoadSpec {
        addr: nginx.addr,
        path: nginx.path.clone(),
        rate: CHECK_RATE,
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(500),
        connections: 4,
        step_at: None,
        step_rate: 0.0,
        timeline_bucket: None,
    })
    .map_err(|e| HostError::Missing(format!("overhead: check load on nginx {when}: {e}")))?;
    validity::check(&report, CHECK_RATE).map_err(|cause| HostError::NotMeasured {
        run: format!("overhead: nginx's check load {when}"),
        cause,
        evidence: format!(
            "{}\n  {}",
            load_summary(&report),
            log_excerpt(
                &format!("nginx's error log {}", nginx.error_log().display()),
                &nginx.error_log_since(log_from),
                3
            )
        ),
    })
}

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// VMs.
    pub vms: u32,
    /// Measurement window.
    pub window: Duration,
    /// Results.
    pub out_dir: PathBuf,
}

/// Runs it; returns `(cpu % of one core, RSS MiB, loop ticks per second)`.
pub fn run(cfg: &Config, bins: &Bins) -> Result<(f64, f64), HostError> {
    std::fs::create_dir_all(&cfg.out_dir).map_err(|source| HostError::Io {
        op: "mkdir",
        path: cfg.out_dir.clone(),
        source,
    })?;
    let online = BenchCgroup::create(
        ONLINE,
        &["cpu", "cpuacct", "memory", "blkio"],
        Some(1 << 30),
    )?;
    let work = cfg.out_dir.join("work");
    let nginx = Nginx::start(&work.join("nginx"), 18082, 1024, &online)?;
    if let Err(e) = check_serves(&nginx, "before the VMs start") {
        drop(nginx);
        online.remove();
        return Err(e);
    }
    let setup = AgentSetup {
        service: "nginx".into(),
        root: format!("/{ROOT}"),
        online_cgroup: format!("/{ONLINE}"),
        policy: bench_policy(crate::host::is_v2()),
        vm_memory_mib: 16,
        service_extra: String::new(),
    };
    let mut agent = Agent::start_with(
        bins,
        &work.join("agent"),
        &setup,
        "  budget:\n    cpu: 1000\n",
    )?;
    let t = Instant::now();
    for i in 0..cfg.vms {
        agent.submit_hold(&format!("idle-{i}"), 3600)?;
    }
    agent.wait_running(Duration::from_secs(120))?;
    eprintln!(
        "colo-bench overhead: {} VMs running after {:.1} s",
        cfg.vms,
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    let c0 = proc_cpu_ns(agent.pid());
    let t0 = Instant::now();
    std::thread::sleep(cfg.window);
    let cpu = (proc_cpu_ns(agent.pid()) - c0) as f64 / 1e9 / t0.elapsed().as_secs_f64() * 100.0;
    let rss = proc_rss(agent.pid()) as f64 / (1 << 20) as f64;
    let served = check_serves(&nginx, "after the window");
    drop(agent);
    drop(nginx);
    BenchCgroup::existing(ROOT, &["cpu", "cpuacct", "memory", "blkio", "pids"]).remove();
    online.remove();
    served?;
    let md = format!(
        "colo-agent with {} idle VMs (workload guest in `hold`), one online service watched (nginx served a check load before and after), QoS loop every 50 ms: CPU {cpu:.2} % of one core over {:.0} s, RSS {rss:.1} MiB (goals ≤ 1 %, ≤ 30 MiB).\n",
        cfg.vms,
        cfg.window.as_secs_f64()
    );
    write_file(&cfg.out_dir.join("overhead.md"), &md)?;
    println!("{md}");
    Ok((cpu, rss))
}
