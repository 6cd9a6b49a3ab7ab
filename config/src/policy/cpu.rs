//! CPU: suppressing the offline group's quota, throttling single VMs.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::qos::pct;
use super::validate::Checker;
use crate::units::{Cores, Percent, duration, format_duration};

/// CPU controls.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CpuPolicy {
    /// The offline group's CPU quota follows what online leaves free.
    pub suppress: CpuSuppress,
    /// Per-VM vCPU quota, the next layer once the group quota is at its minimum.
    pub vcpu_throttle: VcpuThrottle,
}

/// Offline CPU suppression: quota = capacity − online usage − headroom, within
/// [`min_offline_quota`](Self::min_offline_quota), the node's offline CPU budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CpuSuppress {
    /// Whether the offline quota follows online usage; when off it stays at the offline budget.
    pub enabled: bool,
    /// Share of the node's CPU kept free for online bursts.
    pub headroom: Percent,
    /// The offline quota never goes below this many cores.
    pub min_offline_quota: Cores,
    /// Largest quota decrease per step, as a share of node capacity: per loop tick when online
    /// usage grows, per squeeze step under CPU interference (`100%`: straight to the target).
    pub step_down: Percent,
    /// Largest quota increase per release step, as a share of node capacity (release slowly).
    pub step_up: Percent,
    /// CFS period of the offline cgroups; short (10–20 ms) so a new quota bites at once.
    /// The kernel accepts 1 ms to 1 s.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub cfs_period: Duration,
    /// Online usage is averaged over about this long (an exponential moving average) before
    /// the quota follows it. The quota shrinks at once when the average grows but grows back
    /// only in release steps, so following single-tick bursts would ratchet it down; the CPU
    /// weight (low `cpu.shares` / SCHED_IDLE) already gives online a burst's CPU at once.
    /// `0s` follows each tick's usage.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub usage_window: Duration,
}

impl Default for CpuSuppress {
    fn default() -> Self {
        Self {
            enabled: true,
            headroom: pct(10.0),
            min_offline_quota: Cores::new(0.25).unwrap_or_default(),
            step_down: pct(50.0),
            step_up: pct(10.0),
            cfs_period: Duration::from_millis(10),
            usage_window: Duration::from_secs(1),
        }
    }
}

/// Per-VM vCPU throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VcpuThrottle {
    /// Whether single VMs are throttled once the group quota is at its minimum.
    pub enabled: bool,
    /// Share of a VM's vCPUs removed per squeeze step.
    pub step_down: Percent,
    /// When set, a squeeze step grows with how far the worst CPU signal is above its `high`
    /// threshold (`step_down` × value ÷ high), up to this share; `null`: always `step_down`.
    pub max_step_down: Option<Percent>,
    /// Share of a VM's vCPUs given back per release step.
    pub step_up: Percent,
    /// No VM is throttled below this many cores (its QoS class floor may be higher).
    pub min_per_vm: Cores,
}

impl Default for VcpuThrottle {
    fn default() -> Self {
        Self {
            enabled: true,
            step_down: pct(25.0),
            max_step_down: None,
            step_up: pct(10.0),
            min_per_vm: Cores::new(0.1).unwrap_or_default(),
        }
    }
}

impl CpuPolicy {
    /// Reports this section's violations to `c` (the ranges and cross-field rules its types
    /// cannot express).
    pub(super) fn check(&self, c: &mut Checker) {
        let s = &self.suppress;
        if s.headroom.value() >= 100.0 {
            c.invalid(
                "cpu.suppress.headroom",
                s.headroom,
                "headroom must leave some CPU",
                "0% <= value < 100%",
            );
        }
        c.positive_percent("cpu.suppress.step_down", s.step_down);
        c.positive_percent("cpu.suppress.step_up", s.step_up);
        if !(Duration::from_millis(1)..=Duration::from_secs(1)).contains(&s.cfs_period) {
            c.invalid(
                "cpu.suppress.cfs_period",
                format_duration(s.cfs_period),
                "the kernel accepts CFS periods from 1ms to 1s (10ms-20ms lets a quota change bite at once)",
                "1ms..=1s",
            );
        }
        let v = &self.vcpu_throttle;
        c.positive_percent("cpu.vcpu_throttle.step_down", v.step_down);
        if let Some(max) = v.max_step_down
            && max.value() < v.step_down.value()
        {
            c.invalid(
                "cpu.vcpu_throttle.max_step_down",
                max,
                &format!(
                    "must be at least step_down ({}): it caps how much a step grows when the signal is far above its threshold",
                    v.step_down
                ),
                "step_down <= value <= 100%, or null",
            );
        }
        c.positive_percent("cpu.vcpu_throttle.step_up", v.step_up);
    }
}
