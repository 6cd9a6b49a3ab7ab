//! Rule: pause and resume. When a resource has stayed above `high` with nothing left to squeeze
//! for `pause_after`, the first running VM in eviction order is paused (one per `pause_after`).
//! Once the resource has been calm for `resume_after`, paused VMs resume one per release step,
//! most valuable first — before any other release of that resource.

use crate::action::{Action, Rule};
use crate::order;
use crate::resource::Resource;
use crate::step::Step;

pub(crate) fn pause(x: &mut Step<'_>, r: Resource) {
    let Some(after) = x.p.pause_after else { return };
    let rs = *x.st.res(r);
    let Some(exhausted) = rs.exhausted_since else {
        return;
    };
    if x.now.saturating_sub(exhausted) < after || !x.elapsed(rs.last_escalation, after) {
        return;
    }
    let Some(i) = order::first(x.p, &x.s.vms, |i| x.st.vms[i].running()) else {
        return;
    };
    let now = x.now;
    x.st.vms[i].paused_for = Some(r);
    let rs = x.st.res(r);
    rs.last_escalation = Some(now);
    rs.last_change = Some(now);
    let reason = x.squeeze_reason(Rule::Pause, r);
    let vm = x.s.vms[i].id;
    x.vm_act(i, Action::PauseVm { vm, reason });
}

pub(crate) fn resume(x: &mut Step<'_>, r: Resource) -> bool {
    if !x.calm_for(r, x.p.resume_after) {
        return false;
    }
    let Some(i) = order::last(x.p, &x.s.vms, |i| {
        x.st.vms[i].live() && x.st.vms[i].paused_for == Some(r)
    }) else {
        return false;
    };
    x.st.vms[i].paused_for = None;
    let reason = x.release_reason(Rule::Pause, r);
    let vm = x.s.vms[i].id;
    x.vm_act(i, Action::ResumeVm { vm, reason });
    true
}

#[cfg(test)]
mod tests {
    use crate::testing::Harness;
    use crate::{Action, VmId};

    fn events(acts: &[Action]) -> Vec<&'static str> {
        acts.iter()
            .filter(|a| matches!(a, Action::PauseVm { .. } | Action::ResumeVm { .. }))
            .map(|a| a.kind())
            .collect()
    }

    #[test]
    fn a_vm_is_paused_after_the_ladder_is_exhausted_and_resumed_when_calm() {
        let mut h = Harness::new("timing:\n  evict_after: null\n");
        h.capacity(2.0);
        h.vm(1, 1, 256);
        h.sample.vms[0].cpu_usage = 1.0;
        h.run_delay(0.300);
        let mut paused_at = None;
        for t in 1..=200 {
            if events(&h.tick(50)) == ["pause_vm"] {
                paused_at = Some(t * 50);
                break;
            }
        }
        let at = paused_at.expect("paused");
        assert!((2_000..3_500).contains(&at), "paused at {at} ms");
        assert_eq!(
            h.engine.vms().next().unwrap().paused_for,
            Some(crate::Resource::Cpu)
        );
        h.run_delay(0.0);
        let mut resumed_at = None;
        for t in 1..=400 {
            let acts = h.tick(50);
            if acts
                .iter()
                .any(|a| matches!(a, Action::ResumeVm { vm: VmId(1), .. }))
            {
                resumed_at = Some(t * 50);
                break;
            }
            assert!(
                acts.iter().all(|a| a.vm().is_none()),
                "no release before the resume: {acts:?}"
            );
        }
        assert!(resumed_at.expect("resumed") >= 10_000);
    }
}
