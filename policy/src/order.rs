//! Which VM goes first: the policy's eviction order, used for throttling, pausing and evicting.

use std::cmp::Ordering;

use colo_config::policy::EvictionKey;

use crate::params::Params;
use crate::sample::VmSample;

/// `Less` when `a` is to be squeezed (paused, evicted) before `b`.
pub(crate) fn squeeze_before(p: &Params, a: &VmSample, b: &VmSample) -> Ordering {
    for key in &p.order {
        let o = match key {
            EvictionKey::EvictionRank => p.class(a.class).rank.cmp(&p.class(b.class).rank),
            EvictionKey::Priority => a.priority.cmp(&b.priority),
            EvictionKey::YoungestFirst => b.started_at.cmp(&a.started_at),
            EvictionKey::OldestFirst => a.started_at.cmp(&b.started_at),
            EvictionKey::LargestMemoryFirst => b.memory_usage.cmp(&a.memory_usage),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.id.cmp(&b.id)
}

/// The index of the VM to squeeze first among those `eligible`.
pub(crate) fn first(
    p: &Params,
    vms: &[VmSample],
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    pick(p, vms, eligible, Ordering::Less)
}

/// The index of the VM to release first (the last in squeeze order) among those `eligible`.
pub(crate) fn last(
    p: &Params,
    vms: &[VmSample],
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    pick(p, vms, eligible, Ordering::Greater)
}

fn pick(
    p: &Params,
    vms: &[VmSample],
    eligible: impl Fn(usize) -> bool,
    want: Ordering,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    for i in 0..vms.len() {
        if !eligible(i) {
            continue;
        }
        best = match best {
            Some(b) if squeeze_before(p, &vms[i], &vms[b]) != want => Some(b),
            _ => Some(i),
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use colo_config::policy::QosClassName;

    use super::*;
    use crate::sample::VmId;

    fn vm(id: u64, class: QosClassName, priority: i32, started: u64) -> VmSample {
        VmSample {
            id: VmId(id),
            class,
            priority,
            started_at: Duration::from_secs(started),
            ..Default::default()
        }
    }

    #[test]
    fn default_order_is_rank_then_priority_then_youngest() {
        let p = Params::new(&colo_config::Policy::default());
        let vms = [
            vm(1, QosClassName::Mid, 0, 10),
            vm(2, QosClassName::Batch, 5, 10),
            vm(3, QosClassName::Batch, 1, 10),
            vm(4, QosClassName::Batch, 1, 20),
        ];
        assert_eq!(
            first(&p, &vms, |_| true),
            Some(3),
            "batch, low priority, youngest"
        );
        assert_eq!(
            last(&p, &vms, |_| true),
            Some(0),
            "the mid VM is released first"
        );
        assert_eq!(first(&p, &vms, |i| i != 3), Some(2));
        assert_eq!(first(&p, &vms, |_| false), None);
    }

    #[test]
    fn ties_go_to_the_lower_id() {
        let p = Params::new(&colo_config::Policy::default());
        let vms = [
            vm(9, QosClassName::Batch, 0, 0),
            vm(4, QosClassName::Batch, 0, 0),
        ];
        assert_eq!(first(&p, &vms, |_| true), Some(1));
    }
}
