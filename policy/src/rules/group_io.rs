//! Rule: the offline group's IO throttle. Under IO interference each squeeze step cuts it by
//! `step_down` (starting from the lower of the configured limit and what the VMs were doing), to
//! the group floor; release steps give back `step_up` of that baseline, then the configured limit.

use crate::action::{Action, Rule};
use crate::resource::Resource;
use crate::sample::IoLimit;
use crate::step::Step;

fn observed(x: &Step<'_>) -> (u64, u64) {
    let mut bw = 0u64;
    let mut ops = 0u64;
    for (vm, st) in x.s.vms.iter().zip(&x.st.vms) {
        if st.running() {
            bw = bw.saturating_add(vm.io_bytes_per_sec);
            ops = ops.saturating_add(vm.io_ops_per_sec);
        }
    }
    (bw, ops)
}

/// `v × f`, rounded down, in integer units.
pub(crate) fn scale(v: u64, f: f64) -> u64 {
    (v as f64 * f).max(0.0) as u64
}

pub(crate) fn squeeze(x: &mut Step<'_>) -> bool {
    if !x.p.io_squeeze {
        return false;
    }
    let (fb, fo) = (x.p.min_group_bw, x.p.min_group_iops);
    let (cb, co) = if x.st.group_io_squeezed {
        let (bb, bo) = x.st.group_io_base;
        (
            x.st.group_io.bandwidth.unwrap_or(bb),
            x.st.group_io.iops.unwrap_or(bo),
        )
    } else {
        let (ob, oo) = observed(x);
        let base = (
            x.p.group_io.bandwidth.unwrap_or(u64::MAX).min(ob.max(fb)),
            x.p.group_io.iops.unwrap_or(u64::MAX).min(oo.max(fo)),
        );
        x.st.group_io_base = base;
        base
    };
    let keep = 1.0 - x.p.io_step_down;
    let nb = scale(cb, keep).max(fb).min(cb);
    let no = scale(co, keep).max(fo).min(co);
    if x.st.group_io_squeezed && nb == cb && no == co {
        return false;
    }
    let limit = IoLimit {
        bandwidth: Some(nb),
        bandwidth_burst: None,
        iops: Some(no),
        iops_burst: None,
    };
    x.st.group_io = limit;
    x.st.group_io_squeezed = true;
    let reason = x.squeeze_reason(Rule::GroupIo, Resource::Io);
    x.out.push(Action::SetOfflineIoLimit { limit, reason });
    true
}

pub(crate) fn release(x: &mut Step<'_>) -> bool {
    if !x.st.group_io_squeezed {
        return false;
    }
    let (bb, bo) = x.st.group_io_base;
    let cb = x.st.group_io.bandwidth.unwrap_or(bb);
    let co = x.st.group_io.iops.unwrap_or(bo);
    let nb = cb.saturating_add(scale(bb, x.p.io_step_up).max(1));
    let no = co.saturating_add(scale(bo, x.p.io_step_up).max(1));
    let limit = if nb >= bb && no >= bo {
        x.st.group_io_squeezed = false;
        x.p.group_io
    } else {
        IoLimit {
            bandwidth: Some(nb.min(bb)),
            bandwidth_burst: None,
            iops: Some(no.min(bo)),
            iops_burst: None,
        }
    };
    x.st.group_io = limit;
    let reason = x.release_reason(Rule::GroupIo, Resource::Io);
    x.out.push(Action::SetOfflineIoLimit { limit, reason });
    true
}

#[cfg(test)]
mod tests {
    use crate::Action;
    use crate::testing::Harness;

    fn group(acts: &[Action]) -> Vec<(Option<u64>, Option<u64>)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::SetOfflineIoLimit { limit, .. } => Some((limit.bandwidth, limit.iops)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn io_interference_halves_the_group_limit_from_what_the_vms_do() {
        let mut h = Harness::new("");
        h.vm(1, 1, 256);
        h.sample.vms[0].io_bytes_per_sec = 80 << 20;
        h.sample.vms[0].io_ops_per_sec = 1000;
        h.tick(50);
        h.io_latency_ms(50);
        let g = group(&h.tick(50));
        assert_eq!(g, vec![(Some(40 << 20), Some(500))]);
        let mut all = Vec::new();
        for _ in 0..20 {
            all.extend(group(&h.tick(50)));
        }
        // Floors: 4 MiB/s and 100 ops/s.
        assert_eq!(
            all.last().copied(),
            Some((Some(4 << 20), Some(100))),
            "{all:?}"
        );
    }

    #[test]
    fn release_climbs_back_and_restores_the_configured_limit() {
        let mut h = Harness::new("");
        h.vm(1, 1, 256);
        h.sample.vms[0].io_bytes_per_sec = 80 << 20;
        h.tick(50);
        h.io_latency_ms(50);
        for _ in 0..30 {
            h.tick(50);
        }
        h.io_latency_ms(1);
        let mut all = Vec::new();
        for _ in 0..800 {
            all.extend(group(&h.tick(50)));
        }
        assert_eq!(
            all.last().copied(),
            Some((None, None)),
            "unlimited again: {all:?}"
        );
    }
}
