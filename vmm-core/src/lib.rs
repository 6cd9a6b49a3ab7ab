//! colo's MicroVM monitor: one KVM guest per `colo-vmm` process.

/// Exit status of `colo-vmm` when the VMM itself failed (bad arguments, KVM errors).
pub const EXIT_VMM_ERROR: i32 = 70;
