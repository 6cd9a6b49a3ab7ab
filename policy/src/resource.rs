//! The resources the signals speak about and the QoS ladder squeezes.

/// A node resource: the interference signals are read per resource, CPU and IO each have a
/// squeeze ladder, memory evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// CPU: SCHED_IDLE, group quota, vCPU quotas.
    Cpu,
    /// IO: group throttle, VM token buckets.
    Io,
    /// Memory: PSI memory; eviction at the node's memory thresholds.
    Memory,
}
