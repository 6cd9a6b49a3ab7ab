//! KVM-side state of a VM: guest memory, the CPUID table, vCPU threads and what they share with
//! the main thread.

pub mod cpuid;
pub mod memory;
pub mod shared;
pub mod vcpu;
