//! Rule: eviction for interference that pausing did not cure. With pausing on, once every VM the
//! ladder could pause is paused and the resource stays above `high` for `evict_after` after the
//! last pause, the first paused VM in eviction order is evicted; with pausing off, the first
//! running VM after `evict_after` of exhaustion. At most one per `eviction.cooldown`.

use crate::action::{Action, Rule};
use crate::order;
use crate::resource::Resource;
use crate::step::Step;

pub(crate) fn apply(x: &mut Step<'_>, r: Resource) {
    let Some(after) = x.p.evict_after else { return };
    let rs = *x.st.res(r);
    let Some(exhausted) = rs.exhausted_since else {
        return;
    };
    let pausing = x.p.pause_after.is_some();
    if pausing && x.st.vms.iter().any(|v| v.running()) {
        return; // pause first
    }
    let since = if pausing {
        rs.last_escalation.unwrap_or(exhausted)
    } else {
        exhausted.max(rs.last_escalation.unwrap_or(0))
    };
    if x.now.saturating_sub(since) < after || !x.elapsed(x.st.last_evict, x.p.evict_cooldown) {
        return;
    }
    let pick = if pausing {
        order::first(x.p, &x.s.vms, |i| {
            x.st.vms[i].live() && x.st.vms[i].paused_for == Some(r)
        })
    } else {
        order::first(x.p, &x.s.vms, |i| x.st.vms[i].running())
    };
    let Some(i) = pick else { return };
    let now = x.now;
    x.st.vms[i].evicted = true;
    x.st.last_evict = Some(now);
    let rs = x.st.res(r);
    rs.last_escalation = Some(now);
    rs.last_change = Some(now);
    let reason = x.squeeze_reason(Rule::InterferenceEvict, r);
    let vm = x.s.vms[i].id;
    x.vm_act(i, Action::EvictVm { vm, reason });
}

#[cfg(test)]
mod tests {
    use crate::Action;
    use crate::testing::Harness;

    #[test]
    fn paused_vms_are_evicted_when_interference_persists() {
        let mut h = Harness::new("timing:\n  pause_after: 1s\n  evict_after: 3s\n");
        h.capacity(2.0);
        h.vm(1, 1, 256);
        h.vm(2, 1, 256);
        h.run_delay(0.300);
        let mut log = Vec::new();
        for t in 1..=400 {
            for a in h.tick(50) {
                if matches!(a, Action::PauseVm { .. } | Action::EvictVm { .. }) {
                    log.push((t * 50, a.kind(), a.vm().unwrap().0));
                }
            }
        }
        let kinds: Vec<_> = log.iter().map(|(_, k, _)| *k).collect();
        assert_eq!(kinds[..2], ["pause_vm", "pause_vm"], "{log:?}");
        assert!(kinds.contains(&"evict_vm"), "{log:?}");
        let first_evict = log.iter().find(|(_, k, _)| *k == "evict_vm").unwrap();
        let last_pause = log.iter().rfind(|(_, k, _)| *k == "pause_vm").unwrap();
        assert!(first_evict.0 - last_pause.0 >= 3_000, "{log:?}");
    }

    #[test]
    fn without_evict_after_nothing_is_evicted_for_interference() {
        let mut h = Harness::new("timing:\n  evict_after: null\n");
        h.capacity(2.0);
        h.vm(1, 1, 256);
        h.run_delay(0.300);
        for _ in 0..2000 {
            assert!(
                h.tick(50)
                    .iter()
                    .all(|a| !matches!(a, Action::EvictVm { .. }))
            );
        }
    }
}
