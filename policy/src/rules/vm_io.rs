//! Rule: a VM's disk token buckets. Once the group throttle is at its floor and IO interference
//! lasts, each squeeze step cuts the buckets of the first class in eviction order by
//! `step_down`, never below the VM's floor (the larger of `io.squeeze.min_vm_*` and the class's
//! `io_floor` share of the baseline); bursts are off while squeezed. Release gives back
//! `step_up` of the baseline per step, most valuable class first, then the configured buckets.

use crate::action::{Action, Rule};
use crate::order;
use crate::resource::Resource;
use crate::rules::group_io::scale;
use crate::sample::IoLimit;
use crate::step::Step;

fn base(x: &Step<'_>, i: usize) -> (u64, u64) {
    if x.st.vms[i].io_squeezed {
        return x.st.vms[i].io_base;
    }
    let vm = &x.s.vms[i];
    (
        x.p.vm_io
            .bandwidth
            .unwrap_or(u64::MAX)
            .min(vm.io_bytes_per_sec.max(x.p.min_vm_bw)),
        x.p.vm_io
            .iops
            .unwrap_or(u64::MAX)
            .min(vm.io_ops_per_sec.max(x.p.min_vm_iops)),
    )
}

fn floor(x: &Step<'_>, i: usize) -> (u64, u64) {
    let (bb, bo) = base(x, i);
    let f = x.p.class(x.s.vms[i].class).io_floor;
    (
        scale(bb, f).max(x.p.min_vm_bw).min(bb),
        scale(bo, f).max(x.p.min_vm_iops).min(bo),
    )
}

fn current(x: &Step<'_>, i: usize) -> (u64, u64) {
    let (bb, bo) = base(x, i);
    if !x.st.vms[i].io_squeezed {
        return (bb, bo);
    }
    let io = x.st.vms[i].io;
    (io.bandwidth.unwrap_or(bb), io.iops.unwrap_or(bo))
}

fn squeezable(x: &Step<'_>, i: usize) -> bool {
    let st = &x.st.vms[i];
    st.running() && (!st.io_squeezed || current(x, i) != floor(x, i))
}

pub(crate) fn squeeze(x: &mut Step<'_>) -> bool {
    if !x.p.io_squeeze {
        return false;
    }
    let Some(first) = order::first(x.p, &x.s.vms, |i| squeezable(x, i)) else {
        return false;
    };
    let class = x.s.vms[first].class;
    let reason = x.squeeze_reason(Rule::VmIo, Resource::Io);
    let keep = 1.0 - x.p.io_step_down;
    for i in 0..x.s.vms.len() {
        if x.s.vms[i].class != class || !squeezable(x, i) {
            continue;
        }
        let b = base(x, i);
        let (cb, co) = current(x, i);
        let (fb, fo) = floor(x, i);
        let limit = IoLimit {
            bandwidth: Some(scale(cb, keep).max(fb).min(cb)),
            bandwidth_burst: None,
            iops: Some(scale(co, keep).max(fo).min(co)),
            iops_burst: None,
        };
        let st = &mut x.st.vms[i];
        st.io_base = b;
        st.io_squeezed = true;
        st.io = limit;
        let vm = x.s.vms[i].id;
        x.vm_act(i, Action::SetVmIoLimit { vm, limit, reason });
    }
    true
}

pub(crate) fn release(x: &mut Step<'_>) -> bool {
    let squeezed = |x: &Step<'_>, i: usize| x.st.vms[i].running() && x.st.vms[i].io_squeezed;
    let Some(last) = order::last(x.p, &x.s.vms, |i| squeezed(x, i)) else {
        return false;
    };
    let class = x.s.vms[last].class;
    let reason = x.release_reason(Rule::VmIo, Resource::Io);
    for i in 0..x.s.vms.len() {
        if x.s.vms[i].class != class || !squeezed(x, i) {
            continue;
        }
        let (bb, bo) = x.st.vms[i].io_base;
        let (cb, co) = current(x, i);
        let nb = cb.saturating_add(scale(bb, x.p.io_step_up).max(1));
        let no = co.saturating_add(scale(bo, x.p.io_step_up).max(1));
        let limit = if nb >= bb && no >= bo {
            x.st.vms[i].io_squeezed = false;
            x.p.vm_io
        } else {
            IoLimit {
                bandwidth: Some(nb.min(bb)),
                bandwidth_burst: None,
                iops: Some(no.min(bo)),
                iops_burst: None,
            }
        };
        x.st.vms[i].io = limit;
        let vm = x.s.vms[i].id;
        x.vm_act(i, Action::SetVmIoLimit { vm, limit, reason });
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::Action;
    use crate::testing::Harness;

    fn vm_io(acts: &[Action]) -> Vec<(u64, Option<u64>, Option<u64>)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::SetVmIoLimit { vm, limit, .. } => Some((vm.0, limit.bandwidth, limit.iops)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn vm_buckets_tighten_after_the_group_and_stop_at_the_floor() {
        let mut h = Harness::new("");
        h.vm(1, 1, 256);
        h.sample.vms[0].limits.io = h.policy_vm_io();
        h.sample.vms[0].io_bytes_per_sec = 90 << 20;
        h.sample.vms[0].io_ops_per_sec = 1800;
        h.tick(50);
        h.io_latency_ms(50);
        let mut log = Vec::new();
        for _ in 0..40 {
            log.extend(vm_io(&h.tick(50)));
        }
        assert!(!log.is_empty());
        // Baseline min(100 MiB/s, 90 MiB/s) = 90; floor max(2 MiB/s, 10 % of 90) = 9 MiB/s.
        assert_eq!(log[0], (1, Some(45 << 20), Some(900)), "{log:?}");
        assert_eq!(
            log.last().copied(),
            Some((1, Some(9 << 20), Some(180))),
            "{log:?}"
        );
    }
}
