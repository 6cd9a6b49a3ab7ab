//! Run delay above the threshold drops the offline quota; calm again, it rises after the
//! cool-down; no quota goes below the policy minimum.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use colo_proto::agent as pb;

use crate::common::{TestAgent, rt};
use crate::{Online, agent, burn, cancel, offline_dir, quota, ready};

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
