//! `mode: observe` decides the same but changes no cgroup file and no thread's policy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use colo_proto::agent as pb;

use crate::common::{self, TestAgent, rt};
use crate::{Online, agent, burn, cancel, ready};

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
