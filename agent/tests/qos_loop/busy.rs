//! Busy VMs alone (no online contention) are neither squeezed nor evicted by the default policy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use colo_proto::agent as pb;

use crate::common::{self, TestAgent, rt};
use crate::{Online, agent_with_policy, burn, cancel, offline_dir, quota, ready};

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
        // The engine takes a quota within a millicore of its floor as at the floor (a busy
        // node's usage may have left it at 0.251), and the file holds whole microseconds.
        if quota(&off).is_some_and(|q| q <= floor + 0.002) && agent.log_text().contains("run_delay")
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
