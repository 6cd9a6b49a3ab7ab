//! What the benchmark sets on the host: the agent's policy, the low CPU weight of the agent's
//! root (modes 3 and 4), and the removal of cgroups a crashed run left.

use super::ROOT;
use crate::host::{BenchCgroup, HostError};

/// The policy of mode (4) unless one is given: the defaults, with system-wide CPU and IO PSI
/// switched off on cgroup v1, where that figure also counts the VMs' own waits (run delay and
/// the disk's latency are the online signals there).
pub fn bench_policy(v2: bool) -> String {
    let mut p = String::from(
        "apiVersion: colo/v1\nkind: Policy\nmetadata:\n  name: bench\nmode: enforce\n",
    );
    // No quota that follows online usage: on this KVM-PVM VM an offline quota that binds leaves
    // CPUs idle, an idle vCPU is slow to wake (it shows as steal), and nginx got slower and used
    // more CPU per request (measured: its cgroup used ~0.6 cores beside a binding quota against
    // ~0.3 beside the static weight, and p99 5 ms against 1.2 ms). The low CPU weight hands
    // online its CPU within a scheduler tick; the loop squeezes only on interference, in steps
    // of 10 % of a VM, and releases after 1 s calm: this VM's wake-up delay has 100–1000 us
    // spikes lasting a few hundred ms with no contention (host steal), and with the defaults
    // (50 % steps, 5 s calm, 10 % per second back) each spike cost ~13 s of offline CPU.
    // Steps grow with the signal (`max_step_down`): a host spike just over the threshold costs
    // a 10 % step, a breach of several times the threshold (a pushed SLI at 5× its target)
    // up to 50 % at once.
    p.push_str(
        "cpu:\n  suppress:\n    enabled: false\n  vcpu_throttle:\n    step_down: 10%\n    max_step_down: 50%\n",
    );
    // No SCHED_IDLE for the vCPU threads: here it made nginx slower, not faster (cpu hog, one
    // run each, same session: p99 3.9 ms with SCHED_IDLE vCPUs and 0.43–1.8 ms without, static
    // weight 0.8–2.3 ms; stress-ng under SCHED_IDLE likewise 3.8 ms). A likely cause, not
    // verified: a CPU running only SCHED_IDLE tasks counts as idle when the kernel places a
    // waking task, so nginx and its clients land on CPUs whose vCPU thread must be switched
    // out, a costly exit on KVM-PVM.
    p.push_str("qos_classes:\n  batch:\n    sched_idle: never\n");
    p.push_str("timing:\n  release_after: 1s\n  release_cooldown: 200ms\n");
    // The CPU signal is the online tasks' wait per wake-up, not their summed wait, which grows
    // with the request rate (docs/policy.md `wakeup_delay`).
    // Thresholds above this VM's host noise: under the low weight, real CPU contention costs
    // nginx ~16 us per slice (29 us at equal weight); at 100/50 us the loop squeezed on host
    // spikes of 103–197 us (memory hog, 2026-11-29 04:28) and lost progress for nothing. At
    // 500/200 us it acts only when the weight fails to keep online's waits short.
    p.push_str(
        "interference:\n  run_delay: null\n  wakeup_delay:\n    high: 500us\n    low: 200us\n",
    );
    if !v2 {
        p.push_str("  psi:\n    cpu_some: null\n    io_some: null\n    io_full: null\n");
    }
    p
}

/// Gives the agent's root the low CPU weight of modes (3) and (4): the root is the top-level
/// cgroup the VMs share with nothing online, which is where a weight acts against the online
/// service's cgroup (`cpu.shares = 2` on v1, `cpu.weight = 1` on v2; `blkio.bfq.weight = 1`
/// where BFQ is the disk's scheduler).
pub fn set_low_weight(root: &BenchCgroup, v2: bool) -> Result<(), HostError> {
    if v2 {
        root.write("cpu", "cpu.weight", "1")?;
    } else {
        root.write("cpu", "cpu.shares", "2")?;
        if root
            .dir("blkio")
            .is_some_and(|d| d.join("blkio.bfq.weight").exists())
        {
            root.write("blkio", "blkio.bfq.weight", "1")?;
        }
    }
    Ok(())
}

/// Puts the root's CPU weight back to the default.
pub fn reset_weight(root: &BenchCgroup, v2: bool) {
    let _ = if v2 {
        root.write("cpu", "cpu.weight", "100")
    } else {
        root.write("cpu", "cpu.shares", "1024")
    };
}

/// Removes cgroups a crashed earlier run left (only the bench's own names).
pub(super) fn cleanup_leftovers() {
    for c in ["cpu", "cpuacct", "memory", "blkio", "pids", "cpuset"] {
        let b = BenchCgroup::existing(ROOT, &[c]);
        if let Some(d) = b.dir(c)
            && d.join("offline").exists()
        {
            let procs = crate::host::cgroup_procs_recursive(d);
            if procs.is_empty() {
                crate::host::remove_tree(d);
            }
        }
    }
}

#[cfg(test)]
mod policy_tests {
    use colo_config::{Source, parse_policy};

    #[test]
    fn the_bench_policies_pass_the_agents_checks() {
        for v2 in [false, true] {
            let text = super::bench_policy(v2);
            let p = parse_policy(&[Source::new("bench.yaml", text.clone())])
                .unwrap_or_else(|e| panic!("bench policy (v2 {v2}) refused: {e}\n{text}"));
            assert!(!p.cpu.suppress.enabled);
            assert_eq!(p.cpu.vcpu_throttle.step_down.value(), 10.0);
            assert_eq!(
                p.cpu.vcpu_throttle.max_step_down.map(|m| m.value()),
                Some(50.0)
            );
            // The reaction bench's SLI-breach variant: no pause or eviction.
            let sli = crate::reaction::sli_breach_policy(v2);
            let p = parse_policy(&[Source::new("sli.yaml", sli)]).expect("SLI variant");
            assert!(p.timing.pause_after.is_none() && p.timing.evict_after.is_none());
        }
    }
}
