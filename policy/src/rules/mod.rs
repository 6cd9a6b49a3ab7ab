//! The rules, one per file. Each is a small function of the step context; the ladder in
//! `engine.rs` decides which runs when (squeeze fast, release slowly, cheapest layer first).

pub(crate) mod cpu_quota;
pub(crate) mod group_io;
pub(crate) mod interference_evict;
pub(crate) mod memory_evict;
pub(crate) mod pause;
pub(crate) mod sched_idle;
pub(crate) mod vcpu_throttle;
pub(crate) mod vm_io;
pub(crate) mod vm_limits;
