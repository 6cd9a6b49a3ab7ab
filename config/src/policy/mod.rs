//! The policy document (`apiVersion: colo/v1`, `kind: Policy`): what the QoS loop may do to the
//! offline side, when, and how the node scores itself for placement.
//!
//! Every field has a default, so an empty policy (just the header) is a complete, sensible
//! policy; `docs/policy.md` describes each field.

mod cpu;
mod eviction;
mod interference;
mod io;
mod memory;
mod qos;
mod scoring;
mod timing;
pub(crate) mod validate;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cpu::{CpuPolicy, CpuSuppress, VcpuThrottle};
pub use eviction::{Eviction, EvictionKey};
pub use interference::{Interference, PsiScope, PsiThresholds, Threshold};
pub use io::{GroupIoLimits, IoPolicy, IoSqueeze, VmIoLimits};
pub use memory::{MemoryPolicy, VmMemoryLimit, VmMemoryLimitMode};
pub use qos::{QosClass, QosClassName, QosClasses, SchedIdleMode};
pub use scoring::{
    FilterThresholds, Prioritize, RatioComponent, ScoreHeadroom, Scoring, ScoringComponents,
    StallComponent,
};
pub use timing::Timing;

/// The policy schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// `colo/v1`, the only version so far.
    #[default]
    #[serde(rename = "colo/v1")]
    V1,
}

/// The document kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum PolicyKind {
    /// A colo QoS policy.
    #[default]
    Policy,
}

/// Whether the QoS loop acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Apply every action.
    #[default]
    Enforce,
    /// Decide and log every action, change nothing.
    Observe,
}

/// Descriptive data about the policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Metadata {
    /// A name for the policy, shown in logs and `coloctl node`.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// A complete colo policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Schema version: `colo/v1`. Required in every policy file.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Document kind: `Policy`. Required in every policy file.
    pub kind: PolicyKind,
    /// Name and description.
    pub metadata: Metadata,
    /// `enforce` applies actions; `observe` only logs what it would do.
    pub mode: Mode,
    /// Offline QoS classes: floors and eviction rank of each.
    pub qos_classes: QosClasses,
    /// CPU: the offline group's quota (suppress) and per-VM vCPU throttling.
    pub cpu: CpuPolicy,
    /// Memory: eviction thresholds and per-VM memory limits.
    pub memory: MemoryPolicy,
    /// IO: per-VM token buckets, the offline group's limit, and how they tighten.
    pub io: IoPolicy,
    /// The signals that mean "online is suffering", each with a high and a low threshold.
    pub interference: Interference,
    /// Hysteresis and cool-downs: squeeze fast, release slowly.
    pub timing: Timing,
    /// Which VM goes first when one must be evicted, and how often.
    pub eviction: Eviction,
    /// Node scoring for placement (scheduler filter and prioritize).
    pub scoring: Scoring,
}
