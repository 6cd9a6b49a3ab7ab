//! Rule: per-VM vCPU quota. Once the group quota is at its minimum and CPU interference lasts,
//! each squeeze step throttles the VMs of the first class in eviction order by `step_down` of
//! their vCPUs (from what they actually use), never below their floor. Release steps give back
//! `step_up`, most valuable class first; a VM that is not being throttled is freed at once.

use crate::action::{Action, Rule};
use crate::order;
use crate::resource::Resource;
use crate::step::Step;

const EPS: f64 = 1e-3;

fn vcpus(x: &Step<'_>, i: usize) -> f64 {
    f64::from(x.s.vms[i].vcpus)
}

/// The lowest quota the VM may get: the larger of `min_per_vm` and its class's floor.
fn floor(x: &Step<'_>, i: usize) -> f64 {
    let v = vcpus(x, i);
    x.p.vcpu_min
        .max(x.p.class(x.s.vms[i].class).cpu_floor * v)
        .min(v)
}

fn current(x: &Step<'_>, i: usize) -> f64 {
    x.st.vms[i].vcpu_quota.unwrap_or_else(|| vcpus(x, i))
}

fn above_floor(x: &Step<'_>, i: usize) -> bool {
    x.st.vms[i].running() && current(x, i) > floor(x, i) + EPS
}

/// The share of a VM's vCPUs one squeeze step removes: `step_down`, scaled by how far the
/// worst signal is above its threshold (`value ÷ threshold`), within `[step_down,
/// max_step_down]`.
fn step_down(x: &Step<'_>, value: f64, threshold: f64) -> f64 {
    let base = x.p.vcpu_step_down;
    let max = x.p.vcpu_max_step_down.max(base);
    if threshold > 0.0 && value.is_finite() && value > threshold {
        (base * value / threshold).clamp(base, max)
    } else {
        base
    }
}

pub(crate) fn squeeze(x: &mut Step<'_>) -> bool {
    if !x.p.vcpu_throttle {
        return false;
    }
    let Some(first) = order::first(x.p, &x.s.vms, |i| above_floor(x, i)) else {
        return false;
    };
    let class = x.s.vms[first].class;
    let reason = x.squeeze_reason(Rule::VcpuThrottle, Resource::Cpu);
    let step = step_down(x, reason.value, reason.threshold);
    for i in 0..x.s.vms.len() {
        if x.s.vms[i].class != class || !above_floor(x, i) {
            continue;
        }
        let cur = current(x, i);
        let used = x.s.vms[i].cpu_usage;
        // Cut from what the VM uses, so the first step already bites.
        let from = if used.is_finite() && used > 0.0 {
            cur.min(used)
        } else {
            cur
        };
        let new = (from - step * vcpus(x, i)).max(floor(x, i)).min(cur);
        x.st.vms[i].vcpu_quota = Some(new);
        let vm = x.s.vms[i].id;
        x.vm_act(
            i,
            Action::SetVmVcpuQuota {
                vm,
                cores: Some(new),
                period: x.p.cfs_period,
                reason,
            },
        );
    }
    true
}

pub(crate) fn release(x: &mut Step<'_>) -> bool {
    let throttled =
        |x: &Step<'_>, i: usize| x.st.vms[i].running() && x.st.vms[i].vcpu_quota.is_some();
    let Some(last) = order::last(x.p, &x.s.vms, |i| throttled(x, i)) else {
        return false;
    };
    let class = x.s.vms[last].class;
    let reason = x.release_reason(Rule::VcpuThrottle, Resource::Cpu);
    for i in 0..x.s.vms.len() {
        if x.s.vms[i].class != class || !throttled(x, i) {
            continue;
        }
        let v = vcpus(x, i);
        let new = current(x, i) + x.p.vcpu_step_up * v;
        let idle = x.s.vms[i].throttled < 0.01;
        let cores = if idle || new >= v - EPS {
            None
        } else {
            Some(new)
        };
        x.st.vms[i].vcpu_quota = cores;
        let vm = x.s.vms[i].id;
        x.vm_act(
            i,
            Action::SetVmVcpuQuota {
                vm,
                cores,
                period: x.p.cfs_period,
                reason,
            },
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use colo_config::policy::QosClassName;

    use crate::Action;
    use crate::testing::Harness;

    fn vcpu(acts: &[Action]) -> Vec<(u64, Option<f64>)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::SetVmVcpuQuota { vm, cores, .. } => Some((vm.0, *cores)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn batch_is_throttled_before_mid_and_never_below_its_floor() {
        let mut h = Harness::new("");
        h.capacity(4.0);
        h.vm(1, 4, 256);
        h.vm_class(2, QosClassName::Mid);
        h.sample.vms[1].vcpus = 4;
        for vm in &mut h.sample.vms {
            vm.cpu_usage = 4.0;
            vm.throttled = 0.5;
        }
        h.run_delay(0.200);
        let mut log = Vec::new();
        for _ in 0..60 {
            log.extend(vcpu(&h.tick(50)));
        }
        let batch: Vec<_> = log.iter().filter(|(id, _)| *id == 1).collect();
        let mid: Vec<_> = log.iter().filter(|(id, _)| *id == 2).collect();
        // batch floor: max(0.1, 10 % of 4) = 0.4; steps of 1 core: 3, 2, 1, 0.4.
        assert_eq!(batch.last().unwrap().1, Some(0.4), "{log:?}");
        assert_eq!(batch.len(), 4, "{log:?}");
        let first_mid = log.iter().position(|(id, _)| *id == 2).unwrap();
        let last_batch = log.iter().rposition(|(id, _)| *id == 1).unwrap();
        assert!(first_mid > last_batch, "{log:?}");
        // mid floor: 50 % of 4 = 2.
        assert_eq!(mid.last().unwrap().1, Some(2.0), "{log:?}");
    }

    #[test]
    fn release_frees_an_unthrottled_vm_at_once() {
        let mut h = Harness::new("");
        h.capacity(4.0);
        h.vm(1, 2, 256);
        h.sample.vms[0].cpu_usage = 2.0;
        h.run_delay(0.200);
        for _ in 0..10 {
            h.tick(50);
        }
        assert!(h.engine.vms().next().unwrap().vcpu_quota.is_some());
        h.run_delay(0.0);
        h.sample.vms[0].throttled = 0.0;
        let mut freed = false;
        for _ in 0..200 {
            if vcpu(&h.tick(50)).contains(&(1, None)) {
                freed = true;
                break;
            }
        }
        assert!(freed);
    }

    /// The first squeeze of a 4-vCPU VM using all of them, with run delay at `rd` s/s.
    fn first_step(policy: &str, rd: f64) -> Option<f64> {
        let mut h = Harness::new(policy);
        h.capacity(8.0);
        h.vm(1, 4, 256);
        h.sample.vms[0].cpu_usage = 4.0;
        h.run_delay(rd);
        (0..10).find_map(|_| vcpu(&h.tick(50)).first().and_then(|(_, q)| *q))
    }

    #[test]
    fn steps_grow_with_the_signal_up_to_max_step_down() {
        let scaled =
            "cpu:\n  suppress:\n    enabled: false\n  vcpu_throttle:\n    max_step_down: 75%\n";
        let fixed = "cpu:\n  suppress:\n    enabled: false\n";
        // run_delay's default high is 20 ms/s. Without max_step_down: 25 % of 4 vCPUs.
        assert_eq!(first_step(fixed, 0.200), Some(3.0));
        // At 2× the threshold the step doubles (50 %), at 10× it stops at 75 %.
        assert_eq!(first_step(scaled, 0.040), Some(2.0));
        assert_eq!(first_step(scaled, 0.200), Some(1.0));
        // Just above the threshold it stays near step_down.
        let q = first_step(scaled, 0.021).unwrap();
        assert!((2.9..3.0).contains(&q), "{q}");
    }
}
