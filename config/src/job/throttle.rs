//! What the agent's QoS loop has done to a job: written by the loop, kept with the job, shown
//! by the API (`coloctl node`, `coloctl status`).

use serde::{Deserialize, Serialize};

/// What the QoS loop currently does to a job, and why (shown by `coloctl node`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThrottleState {
    /// vCPU CPU quota in millicores (0 = unlimited).
    pub vcpu_quota_millicores: u64,
    /// vCPU threads under `cpu.idle`.
    pub sched_idle: bool,
    /// IO bandwidth limit (0 = unlimited).
    pub io_bandwidth_bps: u64,
    /// IO operations limit (0 = unlimited).
    pub io_iops: u64,
    /// Memory limit in bytes (0 = none beyond the guest size).
    pub memory_limit_bytes: u64,
    /// vCPUs stopped.
    pub paused: bool,
    /// The rule and signal behind the last change.
    pub reason: String,
    /// When it last changed (Unix ms).
    pub changed_unix_ms: i64,
}
