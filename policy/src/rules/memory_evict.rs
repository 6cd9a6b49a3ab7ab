//! Rule: eviction for memory. When node memory in use reaches `evict_at`, VMs are evicted in
//! eviction order — up to `max_per_step` per tick, one tick per `eviction.cooldown` — until
//! projected usage (minus what the evicted VMs hold) is below `stop_at`. Memory PSI above `high`
//! evicts one VM per cool-down as well (pausing would free no memory).

use crate::action::{Action, Direction, Reason, Rule, Signal};
use crate::order;
use crate::step::Step;

pub(crate) fn apply(x: &mut Step<'_>) {
    let n = &x.s.node;
    let total = n.memory_total as f64;
    let used = n.memory_used as f64;
    // The common case without the division (a dependent chain at every tick): not evicting,
    // memory PSI calm, and usage below `evict_at` by a relative margin (1e-9) far above the
    // rounding of `used / total` and of the product, so the exact test below would not start
    // an eviction either. NaN or non-positive thresholds and totals take the exact path.
    if !x.st.memory_evicting
        && !x.a.memory.high
        && total > 0.0
        && used < x.p.evict_at * (1.0 - 1e-9) * total
    {
        return;
    }
    let used_frac = if total > 0.0 { used / total } else { 0.0 };
    if used_frac >= x.p.evict_at {
        x.st.memory_evicting = true;
    }
    if !x.st.memory_evicting && !x.a.memory.high {
        return;
    }
    let mut projected = used;
    for (vm, st) in x.s.vms.iter().zip(&x.st.vms) {
        if st.evicted {
            projected -= vm.memory_usage as f64;
        }
    }
    let below_stop = |projected: f64| total <= 0.0 || projected / total < x.p.stop_at;
    if x.st.memory_evicting && below_stop(projected) {
        x.st.memory_evicting = false;
    }
    let psi = if x.a.memory.high {
        crate::signals::worst_high(x.p, x.s, crate::resource::Resource::Memory)
    } else {
        None
    };
    if !(x.st.memory_evicting || psi.is_some()) || !x.elapsed(x.st.last_evict, x.p.evict_cooldown) {
        return;
    }
    let reason = match (x.st.memory_evicting, psi) {
        (true, _) | (false, None) => Reason {
            rule: Rule::MemoryEvict,
            direction: Direction::Squeeze,
            signal: Signal::NodeMemory,
            value: used_frac,
            threshold: x.p.evict_at,
            service: None,
        },
        (false, Some(h)) => Reason {
            rule: Rule::MemoryEvict,
            direction: Direction::Squeeze,
            signal: h.signal,
            value: h.value,
            threshold: h.band.high,
            service: h.service,
        },
    };
    let budget = if x.st.memory_evicting {
        x.p.max_evictions_per_step.max(1)
    } else {
        1
    };
    let mut evicted = 0;
    while evicted < budget {
        let Some(i) = order::first(x.p, &x.s.vms, |i| x.st.vms[i].live()) else {
            break;
        };
        x.st.vms[i].evicted = true;
        x.st.last_evict = Some(x.now);
        projected -= x.s.vms[i].memory_usage as f64;
        let vm = x.s.vms[i].id;
        x.vm_act(i, Action::EvictVm { vm, reason });
        evicted += 1;
        if x.st.memory_evicting && below_stop(projected) {
            x.st.memory_evicting = false;
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Action;
    use crate::testing::Harness;

    fn evictions(acts: &[Action]) -> Vec<u64> {
        acts.iter()
            .filter(|a| matches!(a, Action::EvictVm { .. }))
            .filter_map(|a| a.vm().map(|v| v.0))
            .collect()
    }

    #[test]
    fn evicts_from_evict_at_until_below_stop_at_respecting_the_cooldown() {
        let mut h = Harness::new("eviction:\n  order: [largest_memory_first]\n  cooldown: 1s\n");
        h.sample.node.memory_total = 100 << 30;
        h.sample.node.memory_used = 92 << 30;
        for (id, gib) in [(1u64, 2u64), (2, 4), (3, 3)] {
            h.vm(id, 1, 256);
            let last = h.sample.vms.len() - 1;
            h.sample.vms[last].memory_usage = gib << 30;
        }
        h.keep_evicted_vms = true;
        let mut log = Vec::new();
        for t in 1..=100 {
            for id in evictions(&h.tick(50)) {
                log.push((t * 50, id));
            }
        }
        // 92 % → evict 4 GiB (88 %) → 3 GiB (85 %, not below 85 %) → 2 GiB (83 %): three, 1 s apart.
        assert_eq!(
            log.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
            vec![2, 3, 1],
            "{log:?}"
        );
        assert!(log.windows(2).all(|w| w[1].0 - w[0].0 >= 1_000), "{log:?}");
    }

    #[test]
    fn below_evict_at_nothing_is_evicted() {
        let mut h = Harness::new("");
        h.sample.node.memory_total = 100 << 30;
        h.sample.node.memory_used = 89 << 30;
        h.vm(1, 1, 256);
        for _ in 0..100 {
            assert!(evictions(&h.tick(50)).is_empty());
        }
    }

    #[test]
    fn usage_exactly_at_evict_at_evicts_and_a_byte_below_does_not() {
        // The early return (no division) must agree with `used / total >= evict_at` at the edge.
        for (used, evicts) in [(90u64, true), (89, false)] {
            let mut h = Harness::new("");
            h.sample.node.memory_total = 100;
            h.sample.node.memory_used = used;
            h.vm(1, 1, 256);
            assert_eq!(!evictions(&h.tick(50)).is_empty(), evicts, "{used} of 100");
        }
        let mut h = Harness::new("");
        h.sample.node.memory_total = 100 << 30;
        h.sample.node.memory_used = (90 << 30) - 1;
        h.vm(1, 1, 256);
        assert!(evictions(&h.tick(50)).is_empty());
        h.sample.node.memory_used = 90 << 30;
        assert_eq!(evictions(&h.tick(50)), vec![1]);
    }
}
