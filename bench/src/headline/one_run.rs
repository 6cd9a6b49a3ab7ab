//! One run of one mode: start the agent (or stress-ng) and the VMs beside nginx, drive the
//! load, and measure the window; plus what a run prepares (memory to touch, stress-ng's
//! arguments, the VMs' disk file).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::host_setup::{bench_policy, reset_weight, set_low_weight};
use super::{Config, Mode, ONLINE, ROOT, RunResult, Scenario};
use crate::host::{BenchCgroup, CpuSnap, HostError, cgroup_cpu_ns, loadavg, proc_cpu_ns, proc_rss};
use crate::loadgen::LoadReport;
use crate::services::{Agent, AgentSetup, Bins, Nginx, StressNg, VmSpec, loadgen};

#[allow(clippy::too_many_arguments)]
pub(super) fn one_run(
    cfg: &Config,
    bins: &Bins,
    online: &BenchCgroup,
    nginx: &Nginx,
    scenario: Scenario,
    mode: Mode,
    rep: usize,
    v2: bool,
    work: &Path,
) -> Result<(RunResult, LoadReport), HostError> {
    let load_before = loadavg();
    let mem_touch = match scenario {
        Scenario::Memory => mem_touch_mib(cfg),
        _ => 0,
    };
    let vm = VmSpec {
        vcpus: 1,
        memory_mib: (mem_touch + 64).max(64),
        mem_touch_mib: mem_touch,
        io: match scenario {
            Scenario::Io => Some((
                work.join("disk.img"),
                format!("write:{}:forever", cfg.io_mib),
            )),
            _ => None,
        },
        // The workload guest burns its CPU units before it starts its IO: the io scenario's
        // VMs do only IO (with CPU units they would never reach it).
        cpu_units: match scenario {
            Scenario::Io => 0,
            _ => crate::services::BURN_UNITS,
        },
        disk_bw: None,
    };
    if vm.io.is_some() {
        for i in 0..cfg.vms {
            prepare_disk(&disk_path(work, i), cfg.io_mib)?;
        }
    }
    let policy = match mode {
        Mode::Unlimited | Mode::Static => {
            "apiVersion: colo/v1\nkind: Policy\nmode: observe\n".to_string()
        }
        _ => cfg.policy.clone().unwrap_or_else(|| bench_policy(v2)),
    };
    let setup = AgentSetup {
        service: "nginx".into(),
        root: format!("/{ROOT}"),
        online_cgroup: format!("/{ONLINE}"),
        policy,
        vm_memory_mib: vm.memory_mib,
        service_extra: String::new(),
    };
    let mut agent = match mode {
        Mode::Alone => None,
        _ => Some(Agent::start(bins, &work.join("agent"), &setup)?),
    };
    let root = BenchCgroup::existing(ROOT, &["cpu", "cpuacct", "memory", "blkio", "pids"]);
    let offline = BenchCgroup::existing(
        &format!("{ROOT}/offline"),
        &["cpu", "cpuacct", "memory", "blkio"],
    );
    let mut stress = None;
    let mut control_cg = None;
    match mode {
        Mode::Alone => {}
        Mode::Control => {
            let cg = BenchCgroup::create(
                &format!("{ROOT}/offline/control"),
                &["cpu", "cpuacct", "memory", "blkio"],
                Some((mem_touch + 256) << 20)
                    .filter(|_| mem_touch > 0)
                    .or(Some(8 << 30)),
            )?;
            stress = Some(StressNg::start(
                &stress_args(cfg, scenario, mem_touch, work),
                work,
                &cg,
            )?);
            control_cg = Some(cg);
        }
        _ => {
            let a = agent
                .as_mut()
                .ok_or_else(|| HostError::Missing("agent".into()))?;
            for i in 0..cfg.vms {
                // Each VM streams over its own file (on the disk nginx logs to).
                let mut vm = vm.clone();
                if let Some((path, _)) = vm.io.as_mut() {
                    *path = disk_path(work, i);
                }
                a.submit(
                    &format!("bench-{}-{}-{rep}-{i}", scenario.name(), mode.key()),
                    &vm,
                )?;
            }
            a.wait_running(Duration::from_secs(30))?;
        }
    }
    if mode.low_weight_root() {
        set_low_weight(&root, v2)?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let actions0 = agent.as_ref().map_or(0, Agent::actions_logged);
    let (mut child, out) = loadgen(
        bins,
        online,
        nginx.addr,
        &nginx.path,
        cfg.rate,
        cfg.duration,
        cfg.warmup,
        &[],
    )?;
    std::thread::sleep(cfg.warmup);
    let t0 = Instant::now();
    let cpu0 = CpuSnap::now();
    let off0 = cgroup_cpu_ns(
        offline
            .dir("cpuacct")
            .or(offline.dir("cpu"))
            .unwrap_or(Path::new("/nonexistent")),
    );
    let prog0 = agent.as_ref().map_or(0, Agent::progress);
    let agent_cpu0 = agent.as_ref().map_or(0, |a| proc_cpu_ns(a.pid()));
    let status = child.wait().map_err(|source| HostError::Io {
        op: "wait",
        path: PathBuf::from("colo-loadgen"),
        source,
    })?;
    let window = t0.elapsed().as_secs_f64();
    let cpu1 = CpuSnap::now();
    let off1 = cgroup_cpu_ns(
        offline
            .dir("cpuacct")
            .or(offline.dir("cpu"))
            .unwrap_or(Path::new("/nonexistent")),
    );
    let prog1 = agent.as_ref().map_or(0, Agent::progress);
    let agent_cpu1 = agent.as_ref().map_or(0, |a| proc_cpu_ns(a.pid()));
    let agent_rss = agent.as_ref().map_or(0, |a| proc_rss(a.pid()));
    let actions = agent
        .as_ref()
        .map_or(0, Agent::actions_logged)
        .saturating_sub(actions0);
    let stress_rate = stress.take().map(StressNg::stop);
    if mode.low_weight_root() {
        reset_weight(&root, v2);
    }
    if let Some(a) = agent.as_ref() {
        // Each run's agent log, kept for after-the-fact questions (which actions, when, why).
        let logs = cfg.out_dir.join("logs");
        let _ = std::fs::create_dir_all(&logs);
        let _ = std::fs::copy(
            a.dir.join("agent.log"),
            logs.join(format!("{}-{}-{rep}.log", scenario.name(), mode.key())),
        );
    }
    drop(agent);
    if let Some(cg) = control_cg {
        cg.remove();
    }
    if mode != Mode::Alone {
        root.remove();
    }
    if !status.success() {
        return Err(HostError::Missing(format!(
            "colo-loadgen failed ({status})"
        )));
    }
    let text = std::fs::read_to_string(&out).map_err(|source| HostError::Io {
        op: "read",
        path: out.clone(),
        source,
    })?;
    let lg: LoadReport = serde_json::from_str(&text)
        .map_err(|e| HostError::Missing(format!("colo-loadgen output: {e}: {text}")))?;
    let busy = cpu1.busy_ns.saturating_sub(cpu0.busy_ns) as f64 / 1e9;
    let total = cpu1.total_ns.saturating_sub(cpu0.total_ns) as f64 / 1e9;
    let cpus = f64::from(cpu1.cpus.max(1));
    let r = RunResult {
        scenario,
        mode,
        rep,
        p50_ms: lg.p50_us / 1e3,
        p99_ms: lg.p99_us / 1e3,
        p999_ms: lg.p999_us / 1e3,
        max_ms: lg.max_us / 1e3,
        achieved_rate: lg.achieved_rate,
        target_rate: lg.target_rate,
        errors: lg.errors,
        progress_per_s: stress_rate.unwrap_or(prog1.saturating_sub(prog0) as f64 / window),
        offline_cpu: off1.saturating_sub(off0) as f64 / 1e9 / window,
        node_util: busy / (cpus * window),
        idle_cpu: cpus - busy / window,
        steal: if total > 0.0 {
            cpu1.steal_ns.saturating_sub(cpu0.steal_ns) as f64 / 1e9 / total
        } else {
            0.0
        },
        agent_cpu_pct: agent_cpu1.saturating_sub(agent_cpu0) as f64 / 1e9 / window * 100.0,
        agent_rss_mib: agent_rss as f64 / (1 << 20) as f64,
        actions,
        load_before,
        window_s: window,
    };
    Ok((r, lg))
}

fn mem_touch_mib(cfg: &Config) -> u64 {
    if cfg.mem_touch_mib > 0 {
        return cfg.mem_touch_mib;
    }
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        >> 10;
    // The workload guest touches memory only in the RAM below the 3 GiB hole.
    (avail * 85 / 100 / u64::from(cfg.vms.max(1))).clamp(64, GUEST_LOW_RAM_MIB)
}

/// The most a workload guest can touch: its `mem=` region must fit in the guest RAM below the
/// 32-bit hole (3 GiB), after its 2 MiB image.
const GUEST_LOW_RAM_MIB: u64 = 3000;

fn stress_args(cfg: &Config, scenario: Scenario, mem_touch: u64, work: &Path) -> Vec<String> {
    let n = cfg.vms.to_string();
    let t = format!("{}s", cfg.duration.as_secs() + 30);
    match scenario {
        Scenario::Cpu => vec!["--cpu".into(), n, "-t".into(), t],
        Scenario::Memory => vec![
            "--vm".into(),
            n,
            "--vm-bytes".into(),
            format!("{mem_touch}M"),
            "--vm-keep".into(),
            "-t".into(),
            t,
        ],
        Scenario::Io => vec![
            "--hdd".into(),
            n,
            "--hdd-opts".into(),
            "direct,wr-seq".into(),
            "--hdd-bytes".into(),
            format!("{}M", cfg.io_mib),
            "--temp-path".into(),
            work.display().to_string(),
            "-t".into(),
            t,
        ],
    }
}

fn disk_path(work: &Path, i: u32) -> PathBuf {
    work.join(format!("disk-{i}.img"))
}

/// Creates the VMs' disk file on the disk nginx uses (the bench's work directory).
fn prepare_disk(path: &Path, mib: u64) -> Result<(), HostError> {
    crate::services::sparse_disk(path, mib)
}
