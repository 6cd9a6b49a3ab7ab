//! Rule: each VM gets the policy's fixed settings when first seen (and after a policy change):
//! its memory cgroup limit (guest memory + overhead) and its unsqueezed IO token buckets.

use crate::action::{Action, Reason, Rule};
use crate::step::Step;

pub(crate) fn apply(x: &mut Step<'_>) {
    if !x.st.vms_changed {
        return;
    }
    for i in 0..x.s.vms.len() {
        let st = x.st.vms[i];
        if !st.fresh || st.evicted {
            continue;
        }
        x.st.vms[i].fresh = false;
        let vm = &x.s.vms[i];
        if let Some(kind) = x.p.vm_memory {
            let bytes = vm.guest_memory.saturating_add(x.p.vm_memory_overhead);
            if st.memory_limit != Some(bytes) {
                x.st.vms[i].memory_limit = Some(bytes);
                let reason = Reason::policy(Rule::VmMemoryLimit);
                x.vm_act(
                    i,
                    Action::SetVmMemoryLimit {
                        vm: vm.id,
                        bytes,
                        kind,
                        reason,
                    },
                );
            }
        }
        if !st.io_squeezed && st.io != x.p.vm_io {
            x.st.vms[i].io = x.p.vm_io;
            let reason = Reason::policy(Rule::VmIo);
            x.vm_act(
                i,
                Action::SetVmIoLimit {
                    vm: vm.id,
                    limit: x.p.vm_io,
                    reason,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Harness;
    use crate::{Action, VmId};

    #[test]
    fn a_new_vm_gets_its_memory_limit_and_io_buckets_once() {
        let mut h = Harness::new("");
        h.vm(1, 2, 512);
        let acts = h.tick(50);
        let mem = acts.iter().find_map(|a| match a {
            Action::SetVmMemoryLimit {
                vm: VmId(1), bytes, ..
            } => Some(*bytes),
            _ => None,
        });
        assert_eq!(mem, Some((512 + 64) << 20));
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::SetVmIoLimit { vm: VmId(1), .. }))
        );
        assert!(
            h.tick(50).iter().all(|a| a.vm() != Some(VmId(1))),
            "nothing more when calm"
        );
    }

    #[test]
    fn limits_already_in_force_are_not_rewritten() {
        let mut h = Harness::new("memory:\n  vm_limit:\n    mode: none\n");
        h.vm(1, 1, 256);
        h.sample.vms[0].limits.io = h.policy_vm_io();
        h.sample.vms[0].limits.sched_idle = true;
        assert!(h.tick(50).iter().all(|a| a.vm().is_none()));
    }
}
