//! The QoS loop against the real thing: a colo-agent process, an online process in its own test
//! cgroup whose threads wait for the CPU when the VMs burn, and workload-guest VMs.
//!
//! * run delay above the threshold → the offline quota drops; calm again → it rises after the
//!   cool-down; no VM's vCPU quota and not the group's ever goes below the policy minimum;
//! * a latency breach pushed with `coloctl report-sli` (the only signal switched on) throttles
//!   the VMs' vCPUs; when the pushes stop, the throttle is lifted;
//! * `mode: observe` decides the same but changes no cgroup file.
//!
//! Timing bounds here are generous (the reaction benchmark in `bench/` measures them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use colo_testkit::TestCgroup;
use common::{Options, TestAgent};

/// When set, the `online_helper` test runs as the online process.
const HELPER_ENV: &str = "COLO_QOS_ONLINE_HELPER";

/// The online process: two threads that work 2 ms and sleep 2 ms, so they are runnable often
/// and wait for the CPU when offline work takes it. Runs only when re-executed by a test.
#[test]
#[ignore = "helper process, started by the other tests"]
fn online_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                loop {
                    let t = Instant::now();
                    let mut x = 0u64;
                    while t.elapsed() < Duration::from_millis(2) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

struct Online {
    child: Option<Child>,
    cg: TestCgroup,
    rel: String,
}

impl Online {
    fn start() -> Self {
        let mut o = Self::idle();
        o.load();
        o
    }

    /// The service's cgroup with nothing running in it yet (no online load).
    fn idle() -> Self {
        let cg = TestCgroup::new(&["cpu", "cpuacct"], 256 << 20).expect("online test cgroup");
        let rel = format!("/{}", cg.name());
        Self {
            child: None,
            cg,
            rel,
        }
    }

    /// Starts the online process in the service's cgroup.
    fn load(&mut self) {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "online_helper",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the online helper");
        let pid = child.id();
        self.child = Some(child);
        self.cg
            .add_pid(pid)
            .expect("move the helper into its cgroup");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ready(test: &str) -> Option<colo_testkit::HostLock> {
    if !colo_testkit::root_or_skip(test) || !colo_testkit::kvm_or_skip(test) {
        return None;
    }
    let waited = Instant::now();
    let lock = colo_testkit::host_lock();
    eprintln!(
        "{test}: host lock after {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    assert!(
        common::vmm_binary().is_some(),
        "{test}: the colo-vmm binary is not built next to this test (cargo build -p colo-vmm, or set COLO_VMM_BIN)"
    );
    Some(lock)
}

/// A test agent watching `online` with `policy` (run delay is the CPU signal: the system-wide
/// PSI of a v1 host also counts the VMs' own waits, so it is switched off here).
fn agent(online: &Online, policy: &str) -> TestAgent {
    agent_with(online, policy, "", "")
}

/// [`agent`] with extra lines for the service (e.g. its `slo:`) and for the policy's
/// `interference:` section.
fn agent_with(online: &Online, policy: &str, service: &str, interference: &str) -> TestAgent {
    agent_with_policy(
        online,
        &format!(
            "apiVersion: colo/v1\nkind: Policy\n{policy}\ninterference:\n  psi:\n    cpu_some: null\n    io_some: null\n    io_full: null\n  io_latency: null\n  io_utilisation: null\n{interference}"
        ),
        service,
    )
}

/// A test agent watching `online` with exactly `policy` (a whole policy file).
fn agent_with_policy(online: &Online, policy: &str, service: &str) -> TestAgent {
    // The common agent names the guest only when $COLO_WORKLOAD_GUEST is set.
    let workload = match common::workload_guest() {
        Some(_) => String::new(),
        None => format!(
            "  workload: {}\n",
            colo_vmm::workload_guest_path()
                .expect("workload guest")
                .display()
        ),
    };
    TestAgent::start(Options {
        budget_cpu: 2.0,
        extra_offline: workload,
        extra: format!(
            "services:\n  - name: online\n    selector:\n      cgroups: [{}]\n{service}loop:\n  period: 50ms\n  psi_triggers: false\n",
            online.rel
        ),
        policy: Some(policy.to_string()),
        ..Options::default()
    })
}

/// Submits `n` one-vCPU VMs that burn until cancelled; waits until they run.
fn burn(agent: &TestAgent, n: usize) -> Vec<String> {
    let t = Instant::now();
    let ids = rt().block_on(async {
        let mut c = agent.client().await;
        let mut ids = Vec::new();
        for i in 0..n {
            let j = common::submit(
                &mut c,
                common::workload(&format!("burn-{i}"), 1_000_000_000, 0, 0),
            )
            .await;
            ids.push(j.id);
        }
        for id in &ids {
            common::wait_for(&mut c, id, Duration::from_secs(20), |j| {
                common::state(j) == pb::JobState::Running
            })
            .await;
        }
        ids
    });
    eprintln!("{n} VMs running after {:.1} s", t.elapsed().as_secs_f64());
    ids
}

fn cancel(agent: &TestAgent, ids: &[String]) {
    let t = Instant::now();
    rt().block_on(async {
        let mut c = agent.client().await;
        for id in ids {
            let _ = c
                .cancel_job(pb::CancelJobRequest {
                    id: id.clone(),
                    reason: "test over".into(),
                })
                .await;
        }
        for id in ids {
            common::wait_end(&mut c, id, Duration::from_secs(30)).await;
        }
    });
    eprintln!(
        "{} VMs ended {:.1} s after cancel",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
}

/// `cpu.cfs_quota_us / cpu.cfs_period_us` of a cgroup directory (v1) or `cpu.max` (v2), cores.
fn quota(dir: &Path) -> Option<f64> {
    if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
        let mut it = max.split_whitespace();
        let q = it.next()?;
        let p: f64 = it.next()?.parse().ok()?;
        return q.parse::<f64>().ok().map(|q| q / p);
    }
    let q: i64 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let p: f64 = std::fs::read_to_string(dir.join("cpu.cfs_period_us"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (q > 0).then(|| q as f64 / p)
}

fn offline_dir(agent: &TestAgent) -> PathBuf {
    agent.cgroup.dir("cpu").join("offline")
}

#[test]
fn the_offline_quota_drops_on_online_run_delay_and_rises_after_the_cool_down() {
    let Some(_lock) =
        ready("the_offline_quota_drops_on_online_run_delay_and_rises_after_the_cool_down")
    else {
        return;
    };
    let mut online = Online::start();
    let policy = "qos_classes:\n  batch:\n    sched_idle: never\ncpu:\n  suppress:\n    min_offline_quota: 0.25\n  vcpu_throttle:\n    min_per_vm: 0.1\ntiming:\n  release_after: 1s\n  release_cooldown: 200ms\n  pause_after: null\n  evict_after: null";
    let agent = agent(&online, policy);
    let ids = burn(&agent, 2);
    let off = offline_dir(&agent);
    let vcpu_dirs: Vec<PathBuf> = ids.iter().map(|id| off.join(id).join("vcpu")).collect();

    // Squeeze: the two VMs take both CPUs from the online threads; their run delay rises and the
    // group quota goes down to the minimum. Meanwhile nothing is ever below its floor.
    let t0 = Instant::now();
    let mut squeezed_at = None;
    let mut lowest_group = f64::INFINITY;
    let mut lowest_vm = f64::INFINITY;
    while t0.elapsed() < Duration::from_secs(30) {
        if let Some(q) = quota(&off) {
            lowest_group = lowest_group.min(q);
            if q <= 0.25 + 1e-6 && squeezed_at.is_none() {
                squeezed_at = Some(t0.elapsed());
            }
        }
        for d in &vcpu_dirs {
            if let Some(q) = quota(d) {
                lowest_vm = lowest_vm.min(q);
            }
        }
        // Keep watching a little after the squeeze so the per-VM layer gets its turn.
        if squeezed_at.is_some_and(|s| t0.elapsed() > s + Duration::from_secs(3)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let squeezed_at = squeezed_at.unwrap_or_else(|| {
        panic!(
            "the offline quota never reached 0.25 cores (lowest {lowest_group}):\n{}",
            agent.log_text()
        )
    });
    assert!(
        lowest_group >= 0.25 - 1e-6,
        "group quota {lowest_group} below the minimum 0.25"
    );
    assert!(
        lowest_vm >= 0.1 - 1e-6,
        "a VM's vCPU quota {lowest_vm} went below the minimum 0.1"
    );
    let log = agent.log_text();
    assert!(
        log.contains("run_delay"),
        "the squeeze names run delay:\n{log}"
    );
    let status = rt().block_on(async {
        agent
            .client()
            .await
            .node_status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert!(
        status.offline_cpu_quota_millicores <= 260,
        "NodeStatus shows the quota: {status:?}"
    );
    assert!(
        status
            .vms
            .iter()
            .any(|v| v.throttle.as_ref().is_some_and(|t| !t.reason.is_empty())),
        "coloctl node shows why: {status:?}"
    );
    eprintln!(
        "squeezed to the minimum {:.0} ms after the VMs ran; lowest VM quota {lowest_vm:.2}",
        squeezed_at.as_secs_f64() * 1e3
    );

    // Calm: the online process ends; after release_after (1 s) the quota grows step by step —
    // as far as the CPU that everything else on the host uses leaves room (the quota follows
    // capacity - non-offline usage - 10 % headroom; a loaded host leaves less).
    online.stop();
    let calm = Instant::now();
    let other = other_cpu(&agent, Duration::from_secs(1));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let room = cpus * 0.9 - other;
    let target = (room - 0.15).clamp(0.25, 0.75);
    if target <= 0.25 + 1e-6 {
        eprintln!(
            "\n*** the release step is not observable: the rest of the host uses {other:.2} of {cpus} cores; only the squeeze was checked ***\n"
        );
        cancel(&agent, &ids);
        return;
    }
    let mut risen = None;
    while calm.elapsed() < Duration::from_secs(30) {
        if quota(&off).is_none_or(|q| q >= target) {
            risen = Some(calm.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let risen = risen.unwrap_or_else(|| {
        panic!(
            "the quota did not rise to {target:.2} cores after the cool-down (the rest of the host used {other:.2} cores; quota {:?}):\n{}",
            quota(&off),
            agent.log_text()
        )
    });
    assert!(
        risen >= Duration::from_millis(900),
        "released before release_after: {risen:?}"
    );
    eprintln!(
        "released to ≥ {target:.2} cores {:.0} ms after the online process ended (the rest of the host used {other:.2} cores)",
        risen.as_secs_f64() * 1e3
    );
    cancel(&agent, &ids);
}

/// CPU (cores) that the host spent outside the agent's offline subtree over `window`: busy time
/// from `/proc/stat` minus the offline group's `cpuacct.usage`.
fn other_cpu(agent: &TestAgent, window: Duration) -> f64 {
    fn busy_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        f.iter().take(8).sum::<u64>()
            - f.get(3).copied().unwrap_or(0)
            - f.get(4).copied().unwrap_or(0)
    }
    let usage = agent
        .cgroup
        .dir("cpuacct")
        .join("offline")
        .join("cpuacct.usage");
    let offline_ns = || -> u64 {
        std::fs::read_to_string(&usage)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let (b0, o0) = (busy_ticks(), offline_ns());
    std::thread::sleep(window);
    let (b1, o1) = (busy_ticks(), offline_ns());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let busy = b1.saturating_sub(b0) as f64 / hz;
    let offline = o1.saturating_sub(o0) as f64 / 1e9;
    ((busy - offline) / window.as_secs_f64()).max(0.0)
}

/// Every file of the agent's offline subtree in the cpu, cpuacct-free hierarchies that a
/// throttle would write, with its content.
fn knob_files(agent: &TestAgent) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let knobs = [
        "cpu.cfs_quota_us",
        "cpu.cfs_period_us",
        "cpu.max",
        "cpu.idle",
        "cpu.shares",
        "cpu.weight",
        "memory.limit_in_bytes",
        "memory.max",
        "memory.high",
        "memory.soft_limit_in_bytes",
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
        "io.max",
    ];
    let mut stack: Vec<PathBuf> = ["cpu", "memory", "blkio"]
        .iter()
        .map(|c| agent.cgroup.dir(c).join("offline"))
        .collect();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if knobs.iter().any(|k| p.file_name().is_some_and(|n| n == *k))
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                out.push((p, t));
            }
        }
    }
    out.sort();
    out
}

/// The scheduling policy of each thread of a process (from `/proc/<pid>/task/*/stat`).
fn thread_policies(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("stat"))
            && let Some(i) = s.rfind(')')
            && let Some(p) = s[i + 2..]
                .split_whitespace()
                .nth(38)
                .and_then(|p| p.parse().ok())
        {
            out.push(p);
        }
    }
    out
}

#[test]
fn observe_mode_decides_but_changes_no_cgroup_file() {
    let Some(_lock) = ready("observe_mode_decides_but_changes_no_cgroup_file") else {
        return;
    };
    let online = Online::start();
    let agent = agent(
        &online,
        "mode: observe\ntiming:\n  pause_after: 1s\n  evict_after: 2s",
    );
    let ids = burn(&agent, 2);
    let before = knob_files(&agent);
    assert!(!before.is_empty());
    let vmm_pids: Vec<u32> = ids
        .iter()
        .filter_map(|id| {
            std::fs::read_to_string(
                agent
                    .cgroup
                    .dir("memory")
                    .join("offline")
                    .join(id)
                    .join("cgroup.procs"),
            )
            .ok()
        })
        .flat_map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    assert!(!vmm_pids.is_empty());
    // Interference for long enough that enforce mode would squeeze, pause and evict.
    let t0 = Instant::now();
    let mut would = false;
    while t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
        let log = agent.log_text();
        if log.contains("observe: would apply")
            && log.contains("set_offline_cpu_quota")
            && t0.elapsed() > Duration::from_secs(4)
        {
            would = true;
            break;
        }
    }
    assert!(
        would,
        "observe mode logs what it would do:\n{}",
        agent.log_text()
    );
    let after = knob_files(&agent);
    assert_eq!(before, after, "observe mode wrote a cgroup file");
    for pid in &vmm_pids {
        assert!(
            thread_policies(*pid)
                .iter()
                .all(|p| *p == libc::SCHED_OTHER),
            "observe mode changed a thread's policy"
        );
    }
    // No VM was paused or evicted.
    rt().block_on(async {
        let mut c = agent.client().await;
        for id in &ids {
            let j = c
                .get_job(pb::GetJobRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(common::state(&j), pb::JobState::Running, "{j:?}");
        }
    });
    cancel(&agent, &ids);
}

#[test]
fn a_pushed_sli_breach_throttles_the_vms_and_calm_lifts_it() {
    let test = "a_pushed_sli_breach_throttles_the_vms_and_calm_lifts_it";
    let Some(_lock) = ready(test) else {
        return;
    };
    // The online process only gives the service its cgroup: run delay is off, so the pushed
    // SLI is the only signal. No usage-following quota, so nothing moves without a signal.
    let online = Online::start();
    let policy = "qos_classes:\n  batch:\n    sched_idle: never\ncpu:\n  suppress:\n    enabled: false\n  vcpu_throttle:\n    min_per_vm: 0.2\ntiming:\n  release_after: 1s\n  release_cooldown: 200ms\n  pause_after: null\n  evict_after: null";
    let agent = agent_with(
        &online,
        policy,
        "    slo:\n      p99: 1ms\n      sli: pushed\n",
        "  run_delay: null\n",
    );
    let ids = burn(&agent, 1);
    let vcpu = offline_dir(&agent).join(&ids[0]).join("vcpu");
    let report = |service: &str, values: &[&str]| {
        let mut args = vec!["report-sli", "--service", service];
        args.extend_from_slice(values);
        let o = common::coloctl(&agent, &args);
        (o.status.code(), common::text(&o))
    };

    // Calm without SLI values: no throttle.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        quota(&vcpu),
        None,
        "throttled with no signal:\n{}",
        agent.log_text()
    );

    // An unknown service is refused with the names the agent knows.
    let (code, text) = report("nope", &["100"]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("must name an online service"), "{text}");

    // A breach: p99 5 ms against a 1 ms target. Pushed every 200 ms, as a service would.
    let breach: Vec<String> = std::iter::repeat_n("5000".to_string(), 20).collect();
    let breach: Vec<&str> = breach.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let mut throttled = None;
    while t0.elapsed() < Duration::from_secs(10) {
        let (code, text) = report("online", &breach);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("20 latencies accepted for online"), "{text}");
        if let Some(q) = quota(&vcpu) {
            throttled = Some((t0.elapsed(), q));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let Some((after, q)) = throttled else {
        panic!(
            "no vCPU throttle within 10 s of the breach:\n{}",
            agent.log_text()
        );
    };
    assert!((0.2..1.0).contains(&q), "vCPU quota {q} outside [0.2, 1)");
    assert!(
        agent.log_text().contains("vcpu_throttle: sli "),
        "the action names its signal:\n{}",
        agent.log_text()
    );
    eprintln!(
        "{test}: throttled to {q:.2} cores {:.0} ms after the first push",
        after.as_secs_f64() * 1e3
    );

    // Calm: the pushes stop; the values age out of the 1 s window, and after release_after the
    // throttle is lifted step by step.
    let t1 = Instant::now();
    while quota(&vcpu).is_some() {
        assert!(
            t1.elapsed() < Duration::from_secs(20),
            "the throttle was not lifted 20 s after the last push (quota {:?}):\n{}",
            quota(&vcpu),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{test}: lifted {:.1} s after the last push",
        t1.elapsed().as_secs_f64()
    );
    cancel(&agent, &ids);
}

/// The state of every job, by id.
fn job_states(agent: &TestAgent, ids: &[String]) -> Vec<(String, pb::JobState, String)> {
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut out = Vec::new();
        for id in ids {
            let j = c
                .get_job(pb::GetJobRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            out.push((id.clone(), common::state(&j), j.message.clone()));
        }
        out
    })
}

/// The default policy, untouched, on this cgroup v1 host: two VMs burning both CPUs with the
/// online service idle must not be squeezed, paused or evicted (system-wide CPU and IO PSI count
/// the VMs' own stalls here, and must not drive the loop); once the online service suffers (its
/// run delay above the default threshold), the loop still acts.
#[test]
fn busy_vms_alone_are_not_squeezed_or_evicted_by_the_default_policy() {
    let test = "busy_vms_alone_are_not_squeezed_or_evicted_by_the_default_policy";
    let Some(_lock) = ready(test) else {
        return;
    };
    let mut online = Online::idle();
    let agent = agent_with_policy(&online, "apiVersion: colo/v1\nkind: Policy\n", "");
    let ids = burn(&agent, 2);
    let off = offline_dir(&agent);
    let vcpu_dirs: Vec<PathBuf> = ids.iter().map(|id| off.join(id).join("vcpu")).collect();
    // Default suppress follows the node's CPU use outside the offline side (capacity - that use
    // - 10 % headroom), so a loaded host lowers the quota; it never goes below the default
    // `min_offline_quota` (0.25 cores) for that. No interference signal may go further.
    let floor = 0.25;
    let t0 = Instant::now();
    let mut lowest_group = f64::INFINITY;
    let mut next_state_check = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(60) {
        if let Some(q) = quota(&off) {
            lowest_group = lowest_group.min(q);
        }
        for d in &vcpu_dirs {
            assert_eq!(
                quota(d),
                None,
                "{}: a busy VM was throttled with no online service suffering:\n{}",
                d.display(),
                agent.log_text()
            );
        }
        if t0.elapsed() >= next_state_check {
            for (id, st, msg) in job_states(&agent, &ids) {
                assert_eq!(
                    st,
                    pb::JobState::Running,
                    "{id} is no longer running after {:.1} s ({msg}):\n{}",
                    t0.elapsed().as_secs_f64(),
                    agent.log_text()
                );
            }
            next_state_check = t0.elapsed() + Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lowest_group >= floor - 1e-6,
        "the offline quota went down to {lowest_group} cores, below the policy's floor {floor}, with no online load:\n{}",
        agent.log_text()
    );
    let log = agent.log_text();
    for action in ["pause_vm", "evict_vm", "psi_cpu", "psi_io", "run_delay"] {
        assert!(
            !log.contains(action),
            "`{action}` in the agent's log with no online load:\n{log}"
        );
    }
    eprintln!("{test}: 60 s with 2 busy VMs, lowest offline quota {lowest_group:.2} cores");

    // Now the online service suffers: its threads wait for the CPUs the VMs hold, and the loop
    // acts on their run delay.
    online.load();
    let t1 = Instant::now();
    let mut acted = None;
    while t1.elapsed() < Duration::from_secs(30) {
        if quota(&off).is_some_and(|q| q <= floor + 1e-6) && agent.log_text().contains("run_delay")
        {
            acted = Some(t1.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let acted = acted.unwrap_or_else(|| {
        panic!(
            "the loop did not squeeze within 30 s of the online service suffering (quota {:?}):\n{}",
            quota(&off),
            agent.log_text()
        )
    });
    assert!(
        agent.log_text().contains("run_delay"),
        "the squeeze names run delay:\n{}",
        agent.log_text()
    );
    eprintln!(
        "{test}: squeezed to the minimum {:.0} ms after the online service started",
        acted.as_secs_f64() * 1e3
    );
    online.stop();
    cancel(&agent, &ids);
}
