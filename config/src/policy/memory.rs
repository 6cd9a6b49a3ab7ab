//! Memory: when to evict, and each VM's memory cgroup limit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::qos::pct;
use super::validate::Checker;
use crate::units::{ByteSize, Percent};

/// Memory controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryPolicy {
    /// Evict offline VMs when node memory in use (total − available) reaches this share.
    pub evict_at: Percent,
    /// …and keep evicting, one per eviction cool-down, until usage is projected below this
    /// share. Must be below `evict_at`.
    pub stop_at: Percent,
    /// The memory cgroup limit of each VM.
    pub vm_limit: VmMemoryLimit,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        Self {
            evict_at: pct(90.0),
            stop_at: pct(85.0),
            vm_limit: VmMemoryLimit::default(),
        }
    }
}

/// How a VM's memory cgroup is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmMemoryLimitMode {
    /// A hard limit (`memory.max` / `memory.limit_in_bytes`): a VMM that outgrows guest memory
    /// plus overhead is OOM-killed and its job reported failed.
    #[default]
    Hard,
    /// A soft limit (`memory.high` / `memory.soft_limit_in_bytes`): reclaimed, never killed.
    Soft,
    /// No limit.
    None,
}

/// The per-VM memory limit: guest memory plus a fixed allowance for the VMM itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VmMemoryLimit {
    /// Hard, soft or no limit.
    pub mode: VmMemoryLimitMode,
    /// Added to the guest memory size for the VMM process (page tables, IO buffers, its heap).
    pub overhead: ByteSize,
}

impl Default for VmMemoryLimit {
    fn default() -> Self {
        Self {
            mode: VmMemoryLimitMode::Hard,
            overhead: ByteSize::mib(64),
        }
    }
}

impl MemoryPolicy {
    /// Reports this section's violations to `c` (the ranges and cross-field rules its types
    /// cannot express).
    pub(super) fn check(&self, c: &mut Checker) {
        let m = self;
        if m.evict_at.value() <= 0.0 {
            c.invalid(
                "memory.evict_at",
                m.evict_at,
                "must be above 0%",
                "0% < value <= 100%",
            );
        }
        if m.stop_at >= m.evict_at {
            c.conflict(
                "memory.stop_at",
                m.stop_at,
                "memory.evict_at",
                format!(
                    "`{}` must be below memory.evict_at (`{}`): eviction stops below the level that \
                     starts it",
                    m.stop_at, m.evict_at
                ),
            );
        }
    }
}
