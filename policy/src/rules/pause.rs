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
    x.st.vms[i].ask_run_state(Some(r), now);
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
    x.st.vms[i].ask_run_state(None, x.now);
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

    /// Ticks until the first pause, which the sample then never shows (a failed enforcement):
    /// returns the tick count, in 50 ms ticks.
    fn pause_that_fails(h: &mut Harness) -> u64 {
        h.capacity(2.0);
        h.vm(1, 1, 256);
        h.sample.vms[0].cpu_usage = 1.0;
        h.run_delay(0.300);
        for t in 1..=200 {
            if events(&h.tick(50)) == ["pause_vm"] {
                h.sample.vms[0].state = crate::VmRunState::Running;
                return t;
            }
        }
        panic!("never paused");
    }

    #[test]
    fn a_pause_that_did_not_take_is_forgotten_after_the_settle_time_and_tried_again() {
        let mut h = Harness::new("timing:\n  evict_after: null\n");
        pause_that_fails(&mut h);
        let settle_ticks = crate::state::RUN_STATE_SETTLE / 50_000_000;
        let mut again = None;
        for t in 1..=600 {
            let acts = h.tick(50);
            let paused = h.engine.vms().next().unwrap().paused_for;
            if t < settle_ticks {
                assert_eq!(paused, Some(crate::Resource::Cpu), "tick {t}");
            }
            if events(&acts) == ["pause_vm"] {
                again = Some(t);
                break;
            }
            h.sample.vms[0].state = crate::VmRunState::Running;
        }
        let again = again.expect("paused again once the first pause was seen to fail");
        assert!(again >= settle_ticks, "tried again after {again} ticks");
    }

    #[test]
    fn a_resume_that_did_not_take_is_retried() {
        let mut h = Harness::new("timing:\n  evict_after: null\n");
        pause_that_fails(&mut h);
        // This time the pause holds.
        h.sample.vms[0].state = crate::VmRunState::Paused;
        h.run_delay(0.0);
        let mut resumes = Vec::new();
        for t in 1..=800 {
            let acts = h.tick(50);
            if acts
                .iter()
                .any(|a| matches!(a, Action::ResumeVm { vm: VmId(1), .. }))
            {
                resumes.push(t);
                if resumes.len() == 2 {
                    break;
                }
            }
            // The resume fails: the VM stays paused.
            h.sample.vms[0].state = crate::VmRunState::Paused;
        }
        assert_eq!(resumes.len(), 2, "resumed twice: {resumes:?}");
        let settle_ticks = crate::state::RUN_STATE_SETTLE / 50_000_000;
        assert!(resumes[1] - resumes[0] >= settle_ticks, "{resumes:?}");
    }

    #[test]
    fn observing_the_engine_keeps_believing_its_own_pause() {
        let mut h = Harness::new("mode: observe\ntiming:\n  evict_after: null\n");
        pause_that_fails(&mut h);
        for _ in 0..400 {
            h.tick(50);
            h.sample.vms[0].state = crate::VmRunState::Running;
        }
        assert_eq!(
            h.engine.vms().next().unwrap().paused_for,
            Some(crate::Resource::Cpu)
        );
    }
}
