//! Rule: vCPU threads under SCHED_IDLE by QoS class — always, never, or while CPU interference
//! lasts (the cheapest layer: squeezed first, released last).

use colo_config::policy::SchedIdleMode;

use crate::action::{Action, Reason, Rule};
use crate::resource::Resource;
use crate::step::Step;

pub(crate) fn apply(x: &mut Step<'_>) {
    // Nothing to do unless the VMs or the interference flag changed since the last look.
    if !x.st.vms_changed && x.st.idle_applied == Some(x.st.idle_squeezed) {
        return;
    }
    x.st.idle_applied = Some(x.st.idle_squeezed);
    for i in 0..x.s.vms.len() {
        if !x.st.vms[i].live() {
            continue;
        }
        let vm = &x.s.vms[i];
        let mode = x.p.class(vm.class).sched_idle;
        let idle = match mode {
            SchedIdleMode::Always => true,
            SchedIdleMode::Never => false,
            SchedIdleMode::OnInterference => x.st.idle_squeezed,
        };
        if idle == x.st.vms[i].sched_idle {
            continue;
        }
        let reason = match (mode, idle) {
            (SchedIdleMode::OnInterference, true) => {
                x.squeeze_reason(Rule::SchedIdle, Resource::Cpu)
            }
            (SchedIdleMode::OnInterference, false) => {
                x.release_reason(Rule::SchedIdle, Resource::Cpu)
            }
            _ => Reason::policy(Rule::SchedIdle),
        };
        x.st.vms[i].sched_idle = idle;
        if reason.direction == crate::action::Direction::Squeeze {
            // A CPU knob moved: releases wait their cool-down from here.
            x.st.cpu.last_change = Some(x.now);
        }
        x.vm_act(
            i,
            Action::SetVcpuSchedIdle {
                vm: vm.id,
                idle,
                reason,
            },
        );
    }
}

/// The last CPU release step: `on_interference` classes leave SCHED_IDLE.
pub(crate) fn release(x: &mut Step<'_>) -> bool {
    std::mem::replace(&mut x.st.idle_squeezed, false)
}

#[cfg(test)]
mod tests {
    use colo_config::policy::QosClassName;

    use crate::Action;
    use crate::testing::Harness;

    fn idle_of(acts: &[Action]) -> Vec<(u64, bool)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::SetVcpuSchedIdle { vm, idle, .. } => Some((vm.0, *idle)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn batch_is_always_idle_and_mid_only_under_interference() {
        let mut h = Harness::new("");
        h.vm(1, 1, 256);
        h.vm_class(2, QosClassName::Mid);
        assert_eq!(idle_of(&h.tick(50)), vec![(1, true)]);
        h.run_delay(0.050);
        assert_eq!(idle_of(&h.tick(50)), vec![(2, true)]);
        h.run_delay(0.0);
        // Released only after release_after (5 s) and the other layers (quota steps) first.
        let mut released_at = None;
        for t in 0..400 {
            if idle_of(&h.tick(50)).contains(&(2, false)) {
                released_at = Some(t);
                break;
            }
        }
        let t = released_at.expect("mid leaves SCHED_IDLE once calm");
        assert!(t * 50 >= 5_000, "released after {} ms", t * 50);
    }

    #[test]
    fn never_means_never() {
        let mut h = Harness::new("qos_classes:\n  batch:\n    sched_idle: never\n");
        h.vm(1, 1, 256);
        h.run_delay(0.5);
        for _ in 0..20 {
            assert!(idle_of(&h.tick(50)).is_empty());
        }
    }
}
