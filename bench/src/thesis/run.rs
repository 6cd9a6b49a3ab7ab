//! One run of one arm: the agent and its jobs beside PostgreSQL, the static settings of the
//! arm, the phases of the load, and the window's measurements. Everything the run starts (the
//! agent, its jobs, the agent's cgroup root and its settings) is undone before it returns,
//! also when it fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::actions::{LoggedAction, parse_actions, per_phase};
use super::offline::{
    clear_cpu_quota, clear_io_cap, container_units, disk_of, set_cpu_quota, set_io_cap,
};
use super::pgbench::{self, PhaseRun, Txn, log_files, now_us, parse_log, quantile};
use super::{Arm, Config, RunResult};
use crate::headline::{bench_policy, set_low_weight};
use crate::host::{BenchCgroup, CpuSnap, HostError, is_v2, loadavg};
use crate::services::{Agent, AgentSetup, Bins, ContainerSpec, Postgres, VmSpec, sparse_disk};

/// The online service's name in agent.yaml (and in ReportSli).
const SERVICE: &str = "postgres";

/// The policy of (4) unless one is given: the bench policy (docs/qos.md) with pause and
/// eviction off (a run must find its jobs alive to count their work), and the IO squeeze in
/// steps of a quarter, so the pushed SLI walks the VMs' buckets down and back up.
pub fn thesis_policy(v2: bool) -> String {
    bench_policy(v2)
        .replacen(
            "timing:\n",
            "timing:\n  pause_after: null\n  evict_after: null\n",
            1,
        )
        .replacen(
            "interference:\n",
            "io:\n  squeeze:\n    step_down: 25%\n    step_up: 10%\ninterference:\n",
            1,
        )
}

/// The agent's root of this process (unique, removed after every run).
fn root_name() -> String {
    format!("colo-bench-thesis-{}", std::process::id())
}

pub(super) fn one_run(
    cfg: &Config,
    bins: &Bins,
    online: &BenchCgroup,
    pg: &Postgres,
    arm: Arm,
    rep: usize,
    work: &Path,
) -> Result<RunResult, HostError> {
    // Start each run from a clean page cache state: what the last arm dirtied is written now.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(1));
    let load_before = loadavg();
    let v2 = is_v2();
    let root_cg = BenchCgroup::existing(&root_name(), &["cpu", "cpuacct", "memory", "blkio"]);
    let agent = if arm == Arm::Alone {
        None
    } else {
        Some(start_agent(cfg, bins, arm, work, v2, online.name())?)
    };
    let r = with_agent(
        cfg,
        online,
        pg,
        arm,
        rep,
        work,
        agent,
        &root_cg,
        v2,
        load_before,
    );
    if arm != Arm::Alone {
        remove_everywhere(&root_name());
    }
    r
}

/// Removes the cgroup `name` (children first) from every hierarchy mounted under
/// /sys/fs/cgroup: the agent and the OCI runtime make it in more than the bench reads
/// (cpuset, devices, freezer, pids, the named systemd one), and the name is this process's own.
pub(super) fn remove_everywhere(name: &str) {
    let Ok(mounts) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for m in mounts.flatten() {
        let d = m.path().join(name);
        if d.is_dir() && crate::host::cgroup_procs_recursive(&d).is_empty() {
            crate::host::remove_tree(&d);
        }
    }
    let d = std::path::Path::new("/sys/fs/cgroup").join(name);
    if d.is_dir() && crate::host::cgroup_procs_recursive(&d).is_empty() {
        crate::host::remove_tree(&d);
    }
}

fn start_agent(
    cfg: &Config,
    bins: &Bins,
    arm: Arm,
    work: &Path,
    v2: bool,
    online: &str,
) -> Result<Agent, HostError> {
    let policy = match arm {
        Arm::Colo => cfg.policy.clone().unwrap_or_else(|| thesis_policy(v2)),
        _ => "apiVersion: colo/v1\nkind: Policy\nmode: observe\n".to_string(),
    };
    let setup = AgentSetup {
        root: format!("/{}", root_name()),
        online_cgroup: format!("/{online}"),
        service: SERVICE.into(),
        policy,
        vm_memory_mib: cfg.unit.mem_mib + 64,
        service_extra: format!(
            "    slo:\n      p99: {}us\n      sli: pushed\n",
            (cfg.slo_p99_ms * 1000.0).round()
        ),
    };
    let dir = work.join("agent");
    let images = work.join("images");
    let extra = format!(
        "  image_roots: [{{path: {}}}]\n  container:\n    runtime_root: {}\n",
        images.display(),
        work.join("runc").display()
    );
    Agent::start_with(bins, &dir, &setup, &extra)
}

fn volume(work: &Path, i: u32) -> PathBuf {
    work.join(format!("vol-{i}"))
}

#[allow(clippy::too_many_arguments)]
fn with_agent(
    cfg: &Config,
    online: &BenchCgroup,
    pg: &Postgres,
    arm: Arm,
    rep: usize,
    work: &Path,
    mut agent: Option<Agent>,
    root: &BenchCgroup,
    v2: bool,
    load_before: f64,
) -> Result<RunResult, HostError> {
    let disk = disk_of(work)?;
    if let Some(a) = agent.as_mut() {
        submit_jobs(cfg, a, arm, rep, work)?;
        a.wait_running(Duration::from_secs(60))?;
        set_low_weight(root, v2)?;
        match arm {
            Arm::ContainerCapped => set_io_cap(root, v2, &disk, cfg.container_cap_mib << 20)?,
            Arm::Static { quota_milli, .. } => set_cpu_quota(root, v2, quota_milli)?,
            _ => {}
        }
        // The jobs reach their steady state (the guest touches its memory first).
        std::thread::sleep(Duration::from_secs(2));
    }
    let measured = measure(cfg, online, pg, arm, rep, work, agent.as_ref());
    if arm == Arm::ContainerCapped {
        clear_io_cap(root, v2, &disk);
    }
    if matches!(arm, Arm::Static { .. }) {
        clear_cpu_quota(root, v2);
    }
    let actions = agent.as_ref().map_or_else(Vec::new, |a| {
        let text = std::fs::read_to_string(a.dir.join("agent.log")).unwrap_or_default();
        let logs = cfg.out_dir.join("logs");
        let _ = std::fs::create_dir_all(&logs);
        let _ = std::fs::write(logs.join(format!("{}-{rep}.log", arm.key())), &text);
        parse_actions(&text)
    });
    // Dropping the agent drains its jobs (SIGTERM stops every VM and container, then it).
    drop(agent);
    let (mut r, phases) = measured?;
    r.phases = per_phase(&phases, &actions);
    r.actions = actions;
    r.load_before = load_before;
    Ok(r)
}

fn submit_jobs(
    cfg: &Config,
    a: &mut Agent,
    arm: Arm,
    rep: usize,
    work: &Path,
) -> Result<(), HostError> {
    for i in 0..cfg.jobs {
        let name = format!("thesis-{}-{rep}-{i}", arm.key());
        if arm.vms() {
            let path = work.join(format!("disk-{i}.img"));
            sparse_disk(&path, cfg.unit.io_mib)?;
            let vm = VmSpec {
                vcpus: 1,
                memory_mib: cfg.unit.mem_mib + 64,
                mem_touch_mib: cfg.unit.mem_mib,
                io: Some((path, cfg.unit.guest_io())),
                cpu_units: cfg.unit.cpu_units,
                disk_bw: match arm {
                    Arm::Static { bucket_mib, .. } => Some(format!("{bucket_mib}MiB/s")),
                    _ => None,
                },
            };
            a.submit(&name, &vm)?;
        } else {
            let image = work.join("images/busybox");
            if !image.join("bin/busybox").exists() {
                busybox_image(&image)?;
            }
            let vol = volume(work, i);
            let _ = std::fs::remove_dir_all(&vol);
            std::fs::create_dir_all(&vol).map_err(|source| HostError::Io {
                op: "mkdir",
                path: vol.clone(),
                source,
            })?;
            a.submit_container(
                &name,
                &ContainerSpec {
                    image,
                    volume: vol,
                    script: cfg.unit.container_script(),
                    memory_mib: cfg.unit.mem_mib + cfg.unit.io_mib + 128,
                    vcpus: 1,
                },
            )?;
        }
    }
    Ok(())
}

/// A busybox root filesystem for the container jobs (static busybox and its applet links).
fn busybox_image(dir: &Path) -> Result<(), HostError> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return Err(HostError::Missing(
            "/bin/busybox not found: apt-get install busybox-static (the container jobs' image)"
                .into(),
        ));
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|source| HostError::Io {
        op: "mkdir",
        path: bin.clone(),
        source,
    })?;
    std::fs::copy(busybox, bin.join("busybox")).map_err(|source| HostError::Io {
        op: "copy",
        path: bin.join("busybox"),
        source,
    })?;
    for applet in ["sh", "dd", "echo", "cat"] {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    for d in ["proc", "dev", "sys", "tmp", "etc", "data"] {
        let _ = std::fs::create_dir_all(dir.join(d));
    }
    Ok(())
}

/// Offline progress in work units so far.
fn units_now(cfg: &Config, arm: Arm, work: &Path, agent: Option<&Agent>) -> f64 {
    match (arm.vms(), agent) {
        (true, Some(a)) => cfg.unit.units_of_bytes(a.disk_bytes()),
        (false, Some(_)) => (0..cfg.jobs)
            .map(|i| container_units(&volume(work, i)) as f64)
            .sum(),
        _ => 0.0,
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    cfg: &Config,
    online: &BenchCgroup,
    pg: &Postgres,
    arm: Arm,
    rep: usize,
    work: &Path,
    agent: Option<&Agent>,
) -> Result<(RunResult, Vec<PhaseRun>), HostError> {
    let root = BenchCgroup::existing(&root_name(), &["cpuacct", "cpu"]);
    let logs = work.join("pgbench");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).map_err(|source| HostError::Io {
        op: "mkdir",
        path: logs.clone(),
        source,
    })?;
    let t0 = Instant::now();
    let cpu0 = CpuSnap::now();
    let off0 = root.cpu_ns();
    let units0 = units_now(cfg, arm, work, agent);
    let mut phases = Vec::new();
    let mut txns: Vec<Txn> = Vec::new();
    let mut not_done = 0;
    let schedule = pgbench::schedule(cfg.peak_rate, cfg.trough_rate, cfg.phase_secs, cfg.cycles);
    for (k, phase) in schedule.into_iter().enumerate() {
        let prefix = logs.join(format!("phase{k}"));
        let start_us = now_us();
        let mut child = pgbench::start_phase(pg, online, phase, cfg.clients, &prefix)?;
        let done = AtomicBool::new(false);
        let status = std::thread::scope(|s| {
            if arm == super::Arm::Colo
                && let Some(a) = agent
            {
                s.spawn(|| feed_sli(a, &prefix, &done));
            }
            let st = child.wait();
            done.store(true, Ordering::Relaxed);
            st
        })
        .map_err(|source| HostError::Io {
            op: "wait",
            path: PathBuf::from("pgbench"),
            source,
        })?;
        let end_us = now_us();
        let mut text = String::new();
        for f in log_files(&prefix) {
            text.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
        }
        let (t, nd) = parse_log(&text);
        phases.push(PhaseRun {
            phase,
            start_us,
            end_us,
            done: t.len() as u64,
            not_done: nd,
            ok: status.success(),
        });
        not_done += nd + u64::from(!status.success());
        txns.extend(t);
    }
    let window = t0.elapsed().as_secs_f64();
    let units1 = units_now(cfg, arm, work, agent);
    let off1 = root.cpu_ns();
    let cpu1 = CpuSnap::now();
    let mut lat: Vec<u64> = txns.iter().map(|t| t.latency_us).collect();
    lat.sort_unstable();
    let total = cpu1.total_ns.saturating_sub(cpu0.total_ns) as f64;
    let r = RunResult {
        arm,
        rep,
        p50_ms: quantile(&lat, 0.5) / 1e3,
        p99_ms: quantile(&lat, 0.99) / 1e3,
        p999_ms: quantile(&lat, 0.999) / 1e3,
        txns: lat.len() as u64,
        not_done,
        units_per_s: (units1 - units0).max(0.0) / window,
        offline_cpu: if arm == Arm::Alone {
            0.0
        } else {
            off1.saturating_sub(off0) as f64 / 1e9 / window
        },
        steal: if total > 0.0 {
            cpu1.steal_ns.saturating_sub(cpu0.steal_ns) as f64 / total
        } else {
            0.0
        },
        load_before: 0.0,
        phases: Vec::new(),
        actions: Vec::<LoggedAction>::new(),
        window_s: window,
    };
    Ok((r, phases))
}

/// Pushes the latencies pgbench logged since the last push to the agent (`ReportSli`) every
/// 250 ms while the phase runs: the loop's SLI signal. pgbench buffers its log, so at a low
/// rate a push may carry latencies a few seconds old.
fn feed_sli(agent: &Agent, prefix: &Path, done: &AtomicBool) {
    let mut offsets: Vec<(PathBuf, usize)> = Vec::new();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let mut lat = Vec::new();
        for f in log_files(prefix) {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let from = offsets.iter().find(|(p, _)| *p == f).map_or(0, |(_, o)| *o);
            // Only whole lines: the last one may still be written.
            let Some(end) = text.rfind('\n').map(|i| i + 1) else {
                continue;
            };
            if end <= from {
                continue;
            }
            lat.extend(parse_log(&text[from..end]).0.iter().map(|t| t.latency_us));
            match offsets.iter_mut().find(|(p, _)| *p == f) {
                Some(o) => o.1 = end,
                None => offsets.push((f, end)),
            }
        }
        // A push of a bounded size: every k-th latency of a large batch.
        let step = lat.len().div_ceil(400).max(1);
        let sample: Vec<u64> = lat.into_iter().step_by(step).collect();
        if !sample.is_empty() {
            let _ = agent.report_sli(SERVICE, &sample);
        }
    }
}

#[cfg(test)]
mod tests {
    use colo_config::{Source, parse_policy};

    #[test]
    fn the_thesis_policy_passes_the_agents_checks() {
        for v2 in [false, true] {
            let text = super::thesis_policy(v2);
            let p = parse_policy(&[Source::new("thesis.yaml", text.clone())])
                .unwrap_or_else(|e| panic!("thesis policy (v2 {v2}) refused: {e}\n{text}"));
            assert!(p.timing.pause_after.is_none(), "{text}");
            assert_eq!(p.io.squeeze.step_down.value(), 25.0);
        }
    }
}
