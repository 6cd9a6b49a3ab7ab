//! Offline QoS classes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::Percent;

/// The offline QoS classes a job can be submitted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QosClassName {
    /// Best-effort batch work: squeezed first, evicted first.
    #[default]
    Batch,
    /// Mid tier: batch work that should keep more progress (higher floors, evicted later).
    Mid,
}

/// When a VM's vCPU threads run under SCHED_IDLE (v1 `cpu.idle` / v2 `cpu.idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchedIdleMode {
    /// From the start: the VM only gets CPU no online task wants.
    #[default]
    Always,
    /// Only while interference is above its high threshold; back to normal on release.
    OnInterference,
    /// Never.
    Never,
}

/// The floors and eviction rank of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QosClass {
    /// Eviction order between classes: lower ranks are evicted (and paused) first.
    pub eviction_rank: u8,
    /// The vCPU quota of a VM of this class is never throttled below this share of its vCPUs
    /// (before pause); `cpu.vcpu_throttle.min_per_vm` still applies if higher.
    pub cpu_floor: Percent,
    /// A VM's IO limits are never squeezed below this share of their baseline (the configured
    /// limit, or the VM's rate when squeezing began); `io.squeeze.min_*` still apply if higher.
    pub io_floor: Percent,
    /// When the VM's vCPU threads run under SCHED_IDLE.
    pub sched_idle: SchedIdleMode,
}

impl Default for QosClass {
    /// The `batch` class's defaults.
    fn default() -> Self {
        QosClasses::default().batch
    }
}

/// The two classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QosClasses {
    /// Best-effort batch.
    pub batch: QosClass,
    /// Mid tier.
    pub mid: QosClass,
}

impl QosClasses {
    /// The settings of `class`.
    pub fn get(&self, class: QosClassName) -> &QosClass {
        match class {
            QosClassName::Batch => &self.batch,
            QosClassName::Mid => &self.mid,
        }
    }
}

impl Default for QosClasses {
    fn default() -> Self {
        Self {
            batch: QosClass {
                eviction_rank: 0,
                cpu_floor: pct(10.0),
                io_floor: pct(10.0),
                sched_idle: SchedIdleMode::Always,
            },
            mid: QosClass {
                eviction_rank: 1,
                cpu_floor: pct(50.0),
                io_floor: pct(25.0),
                sched_idle: SchedIdleMode::OnInterference,
            },
        }
    }
}

/// A percentage known to be in range (for defaults).
pub(crate) fn pct(v: f64) -> Percent {
    Percent::new(v).unwrap_or_default()
}
