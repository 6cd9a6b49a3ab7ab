//! The QoS loop acts on container jobs as on VMs: the vCPU quota lands on the container's
//! cgroup, pause freezes it, evict ends it Preempted, and observe mode leaves it alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;

use crate::common::{self, TestAgent, rt};
use crate::{
    Online, agent, burn, burn_containers, burn_containers_keyed, burn_containers_with, cancel,
    offline_dir, quota, ready_without_kvm,
};

/// Pids in a cgroup directory (`cgroup.procs`).
fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The freezer state of a container job's cgroup, `FROZEN` or `THAWED`, if there is one: v1
/// `freezer.state`, v2 the `frozen` line of `cgroup.events`.
fn freezer(agent: &TestAgent, id: &str) -> Option<String> {
    let rel = Path::new("offline").join(id).join("vcpu");
    if agent.cgroup.version() == colo_testkit::CgroupVersion::V2 {
        let events =
            std::fs::read_to_string(agent.cgroup.dir("cpu").join(rel).join("cgroup.events"))
                .ok()?;
        let frozen = events.lines().find_map(|l| l.strip_prefix("frozen "))?;
        return Some(
            if frozen.trim() == "1" {
                "FROZEN"
            } else {
                "THAWED"
            }
            .to_string(),
        );
    }
    let dir = PathBuf::from("/sys/fs/cgroup/freezer")
        .join(agent.cgroup.name())
        .join(rel);
    std::fs::read_to_string(dir.join("freezer.state"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn job(agent: &TestAgent, id: &str) -> pb::Job {
    rt().block_on(async {
        agent
            .client()
            .await
            .get_job(pb::GetJobRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    })
}

#[test]
fn a_container_job_is_squeezed_on_online_run_delay_in_its_own_cgroup() {
    let test = "a_container_job_is_squeezed_on_online_run_delay_in_its_own_cgroup";
    let Some(_lock) = ready_without_kvm(test) else {
        return;
    };
    // The online load starts once the containers run: squeezed from the start, a slow host
    // (TCG) would create them at a quarter of a core.
    let mut online = Online::idle();
    let policy = "qos_classes:\n  batch:\n    sched_idle: never\ncpu:\n  suppress:\n    min_offline_quota: 0.25\n  vcpu_throttle:\n    min_per_vm: 0.1\ntiming:\n  release_after: 1s\n  release_cooldown: 200ms\n  pause_after: null\n  evict_after: null";
    let agent = agent(&online, policy);
    let Some(ids) = burn_containers(&agent, 2, test) else {
        return;
    };
    online.load();
    let off = offline_dir(&agent);
    let vcpu: Vec<PathBuf> = ids.iter().map(|id| off.join(id).join("vcpu")).collect();
    // The container's processes live in the cgroup the loop throttles.
    for d in &vcpu {
        assert!(!procs(d).is_empty(), "no process in {}", d.display());
    }
    let t0 = Instant::now();
    let mut squeezed = None;
    let mut throttled = None;
    let mut lowest_vm = f64::INFINITY;
    while t0.elapsed() < Duration::from_secs(40) {
        if squeezed.is_none() && quota(&off).is_some_and(|q| q <= 0.25 + 1e-6) {
            squeezed = Some(t0.elapsed());
        }
        for d in &vcpu {
            // Below the job's own core: the squeeze reached the container's processes.
            if let Some(q) = quota(d).filter(|q| *q < 1.0 - 1e-6) {
                lowest_vm = lowest_vm.min(q);
                throttled.get_or_insert(t0.elapsed());
            }
        }
        if squeezed.is_some() && throttled.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        squeezed.is_some() && throttled.is_some(),
        "the loop did not squeeze the containers (group quota {:?}, a container's vcpu quota seen: {})\n{}",
        quota(&off),
        throttled.is_some(),
        agent.log_text()
    );
    assert!(
        lowest_vm >= 0.1 - 1e-6,
        "a container's quota {lowest_vm} went below 0.1"
    );
    eprintln!(
        "containers: group quota at the minimum {:.0} ms after the online load began, a container's own quota after {:.0} ms (lowest {lowest_vm:.2})",
        squeezed.unwrap().as_secs_f64() * 1e3,
        throttled.unwrap().as_secs_f64() * 1e3
    );
    cancel(&agent, &ids);
}

/// Where KVM works, a VM besides the containers (`ready_without_kvm` took the host lock): the
/// loop treats both sandboxes alike. Without KVM (the cgroup v2 TCG host) the VM half is skipped
/// loudly and the test runs on containers alone.
fn vm_if_kvm(agent: &TestAgent, test: &str) -> Vec<String> {
    if !colo_testkit::kvm_or_skip(&format!("{test} (its VM half)")) {
        return Vec::new();
    }
    assert!(
        common::vmm_binary().is_some(),
        "{test}: the colo-vmm binary is not built next to this test (cargo build -p colo-vmm, or set COLO_VMM_BIN)"
    );
    burn(agent, 1)
}

/// Pause freezes a container's cgroup (v1 `freezer.state`, v2 `cgroup.freeze` read back from
/// `cgroup.events`) and stops its CPU use; resume thaws it. The online load starts once the jobs
/// run, so that a slow host (TCG) starts them unsqueezed.
#[test]
fn offline_jobs_are_paused_while_online_suffers_and_resumed_after() {
    let test = "offline_jobs_are_paused_while_online_suffers_and_resumed_after";
    let Some(_lock) = ready_without_kvm(test) else {
        return;
    };
    let mut online = Online::idle();
    let policy = "qos_classes:\n  batch:\n    sched_idle: never\ntiming:\n  release_after: 1s\n  release_cooldown: 200ms\n  pause_after: 1s\n  evict_after: null";
    let agent = agent(&online, policy);
    let Some(mut ids) = burn_containers(&agent, 1, test) else {
        return;
    };
    let container = ids[0].clone();
    ids.extend(vm_if_kvm(&agent, test));
    online.load();
    let t0 = Instant::now();
    let mut frozen = false;
    while t0.elapsed() < Duration::from_secs(60) {
        let paused = ids
            .iter()
            .all(|id| common::state(&job(&agent, id)) == pb::JobState::Paused);
        if paused && freezer(&agent, &container).as_deref() == Some("FROZEN") {
            frozen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        frozen,
        "not all paused (states {:?}, freezer {:?}):\n{}",
        ids.iter()
            .map(|id| common::state(&job(&agent, id)))
            .collect::<Vec<_>>(),
        freezer(&agent, &container),
        agent.log_text()
    );
    eprintln!(
        "{} job(s) paused {:.1} s after the online load began",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );
    // Frozen means no CPU: the container's cgroup accounts no time while paused.
    let vcpu = offline_dir(&agent).join(&container).join("vcpu");
    let before = cpu_usage(&agent, &vcpu);
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_usage(&agent, &vcpu);
    assert!(
        before.is_some() && before == after,
        "a frozen container used CPU ({before:?} -> {after:?})"
    );
    online.stop();
    let t1 = Instant::now();
    let mut resumed = false;
    while t1.elapsed() < Duration::from_secs(60) {
        let running = ids
            .iter()
            .all(|id| common::state(&job(&agent, id)) == pb::JobState::Running);
        if running && freezer(&agent, &container).as_deref() == Some("THAWED") {
            resumed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        resumed,
        "not resumed after the online load ended:\n{}",
        agent.log_text()
    );
    eprintln!(
        "resumed {:.1} s after the online load ended",
        t1.elapsed().as_secs_f64()
    );
    // Thawed means running again: its CPU time grows.
    let thawed = cpu_usage(&agent, &vcpu);
    let grew = Instant::now();
    while cpu_usage(&agent, &vcpu) == thawed && grew.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        cpu_usage(&agent, &vcpu),
        thawed,
        "the resumed container used no CPU in 20 s"
    );
    cancel(&agent, &ids);
}

/// CPU time a cgroup has used, in the kernel's unit (v2 `usage_usec` of `cpu.stat`, v1
/// `cpuacct.usage`).
fn cpu_usage(agent: &TestAgent, cpu_dir: &Path) -> Option<u64> {
    if agent.cgroup.version() == colo_testkit::CgroupVersion::V2 {
        let stat = std::fs::read_to_string(cpu_dir.join("cpu.stat")).ok()?;
        return stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok();
    }
    let rel = cpu_dir.strip_prefix(agent.cgroup.dir("cpu")).ok()?;
    std::fs::read_to_string(agent.cgroup.dir("cpuacct").join(rel).join("cpuacct.usage"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Eviction picks the lowest priority first: the container at priority -1 goes before a job at
/// priority 0 (a VM where KVM works, else a second container), and it ends Preempted with the
/// rule in its message, its cgroups removed, while the other job still runs (the eviction
/// cooldown holds the next one back).
#[test]
fn a_container_is_evicted_before_a_job_of_higher_priority_when_online_keeps_suffering() {
    let test = "a_container_is_evicted_before_a_job_of_higher_priority_when_online_keeps_suffering";
    let Some(_lock) = ready_without_kvm(test) else {
        return;
    };
    let mut online = Online::idle();
    let policy = "qos_classes:\n  batch:\n    sched_idle: never\ntiming:\n  pause_after: null\n  evict_after: 2s\neviction:\n  cooldown: 60s";
    let agent = agent(&online, policy);
    let Some(ids) = burn_containers_with(&agent, 1, -1, test) else {
        return;
    };
    let mut other = vm_if_kvm(&agent, test);
    if other.is_empty() {
        // A second container at priority 0 (its key differs from the first one's).
        let Some(second) = burn_containers_keyed(&agent, "burn-container-high", 0, test) else {
            return;
        };
        other.push(second);
    }
    online.load();
    // Polled rather than watched, so that a slow eviction on a loaded host shows the agent's
    // log (what the loop saw and did) instead of a bare timeout.
    let t0 = Instant::now();
    let container = loop {
        let j = job(&agent, &ids[0]);
        let ended = matches!(
            common::state(&j),
            pb::JobState::Succeeded
                | pb::JobState::Failed
                | pb::JobState::Cancelled
                | pb::JobState::Preempted
        );
        if ended {
            break j;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the container was not evicted within 120 s: {j:?}\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        common::state(&container),
        pb::JobState::Preempted,
        "{container:?}\n{}",
        agent.log_text()
    );
    assert!(container.message.contains("evict"), "{container:?}");
    let gone = Instant::now();
    while offline_dir(&agent).join(&ids[0]).exists() && gone.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !offline_dir(&agent).join(&ids[0]).exists(),
        "the evicted container's cgroup is left"
    );
    let other_state = common::state(&job(&agent, &other[0]));
    assert_eq!(
        other_state,
        pb::JobState::Running,
        "the job of higher priority\n{}",
        agent.log_text()
    );
    eprintln!(
        "the priority -1 container was evicted {:.1} s after the online load began",
        t0.elapsed().as_secs_f64()
    );
    online.stop();
    cancel(&agent, &other);
}

#[test]
fn observe_mode_leaves_a_container_alone() {
    let test = "observe_mode_leaves_a_container_alone";
    let Some(_lock) = ready_without_kvm(test) else {
        return;
    };
    let online = Online::start();
    let agent = agent(
        &online,
        "mode: observe\ntiming:\n  pause_after: 1s\n  evict_after: 2s",
    );
    let Some(ids) = burn_containers(&agent, 2, test) else {
        return;
    };
    let vcpu: Vec<PathBuf> = ids
        .iter()
        .map(|id| offline_dir(&agent).join(id).join("vcpu"))
        .collect();
    // The job's own cores (1) bound its cgroup in observe mode too: that is its size, not a QoS
    // action. Nothing else may move.
    let bound = Instant::now();
    while vcpu.iter().any(|d| quota(d).is_none()) && bound.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for d in &vcpu {
        assert_eq!(quota(d), Some(1.0), "the job's cores bound {}", d.display());
    }
    let group_before = quota(&offline_dir(&agent));
    let t0 = Instant::now();
    let mut would = false;
    while t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
        let log = agent.log_text();
        if log.contains("observe: would apply") && t0.elapsed() > Duration::from_secs(4) {
            would = true;
            break;
        }
    }
    assert!(
        would,
        "observe mode logs what it would do:\n{}",
        agent.log_text()
    );
    assert_eq!(
        quota(&offline_dir(&agent)),
        group_before,
        "observe mode changed the group quota"
    );
    for (d, id) in vcpu.iter().zip(&ids) {
        assert_eq!(
            quota(d),
            Some(1.0),
            "observe mode throttled {}",
            d.display()
        );
        assert_eq!(freezer(&agent, id).as_deref(), Some("THAWED"));
        assert_eq!(common::state(&job(&agent, id)), pb::JobState::Running);
    }
    cancel(&agent, &ids);
}
