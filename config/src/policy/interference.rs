//! Interference signals: what says that online services are suffering.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::qos::pct;
use super::validate::Checker;
use crate::units::{DurationValue, Percent, StallRate};

/// A signal's two thresholds: above `high` the loop squeezes the offline side; only once the
/// signal has stayed below `low` for `timing.release_after` does it release. Between the two it
/// holds (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold<T> {
    /// Squeeze above this.
    pub high: T,
    /// Release only below this; must be below `high`.
    pub low: T,
}

/// Which PSI figures are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PsiScope {
    /// Each online service's cgroup where it has PSI (v2); otherwise none (system-wide PSI also
    /// counts the VMs' own stalls and every other task's).
    #[default]
    Auto,
    /// Each online service's cgroup (`<cgroup>/{cpu,memory,io}.pressure`, v2 only).
    Cgroup,
    /// System-wide `/proc/pressure/*` (on v1 this includes the VMs' own stalls).
    System,
}

/// PSI thresholds, as stall time per second computed from the `total` counters (the `avg10`
/// figures are 10 s averages updated every 2 s, too slow for the loop). `null` ignores a figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PsiThresholds {
    /// Per cgroup or system-wide.
    pub scope: PsiScope,
    /// `cpu` `some`: time some online task waited for a CPU. Drives CPU squeezing.
    pub cpu_some: Option<Threshold<StallRate>>,
    /// `memory` `some`: time some task stalled on memory. Drives eviction.
    pub memory_some: Option<Threshold<StallRate>>,
    /// `memory` `full`: time all non-idle tasks stalled on memory. Drives eviction.
    pub memory_full: Option<Threshold<StallRate>>,
    /// `io` `some`. Drives IO squeezing.
    pub io_some: Option<Threshold<StallRate>>,
    /// `io` `full`. Drives IO squeezing.
    pub io_full: Option<Threshold<StallRate>>,
}

fn stall(high_ms: u64, low_ms: u64) -> Option<Threshold<StallRate>> {
    Some(Threshold {
        high: StallRate::from_millis_per_sec(high_ms),
        low: StallRate::from_millis_per_sec(low_ms),
    })
}

impl Default for PsiThresholds {
    fn default() -> Self {
        Self {
            scope: PsiScope::Auto,
            cpu_some: stall(100, 20),
            memory_some: stall(50, 10),
            memory_full: stall(20, 5),
            io_some: stall(100, 20),
            io_full: stall(50, 10),
        }
    }
}

/// The interference signals; `null` ignores a signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Interference {
    /// Run-queue delay of an online service: the time its tasks waited for a CPU, summed over
    /// its tasks, per second (from `/proc/<pid>/schedstat`). The primary CPU signal, and the only
    /// clean one on cgroup v1. Drives CPU squeezing.
    pub run_delay: Option<Threshold<StallRate>>,
    /// Wake-up delay of an online service: the mean time its tasks waited for a CPU each time
    /// they were scheduled (run-queue wait ÷ time slices, both from `/proc/<pid>/schedstat`,
    /// over all its tasks). Unlike `run_delay` it does not grow with the request rate: a service
    /// answering 3,000 requests per second wakes ~10,000 times a second, and even 15 µs per
    /// wake-up sums to 150 ms/s with no CPU contention at all. Drives CPU squeezing.
    pub wakeup_delay: Option<Threshold<DurationValue>>,
    /// Pressure stall information.
    pub psi: PsiThresholds,
    /// SLI: the online service's measured p99 latency divided by its target (services with an
    /// SLO only). Drives CPU and IO squeezing.
    pub sli: Option<Threshold<f64>>,
    /// Mean latency of the online service's disk IO (per request completed in the interval).
    /// Drives IO squeezing.
    pub io_latency: Option<Threshold<DurationValue>>,
    /// Busy time of the disk online services use (share of the interval with IO in flight).
    /// Drives IO squeezing.
    pub io_utilisation: Option<Threshold<Percent>>,
    /// CPU signals (run delay, CPU PSI) count against the offline side only while the node's
    /// idle CPU is below this share of its capacity. With more CPU idle than that, online tasks
    /// that wait are not waiting for a CPU the offline side holds (they wait on wake-up latency,
    /// on a hypervisor's steal, or on each other), and squeezing offline would only leave more
    /// CPUs idle. `null` (the default): CPU signals always count.
    pub cpu_idle_gate: Option<Percent>,
}

impl Default for Interference {
    fn default() -> Self {
        Self {
            run_delay: stall(20, 5),
            wakeup_delay: None,
            psi: PsiThresholds::default(),
            sli: Some(Threshold {
                high: 1.0,
                low: 0.8,
            }),
            io_latency: Some(Threshold {
                high: DurationValue(Duration::from_millis(20)),
                low: DurationValue(Duration::from_millis(5)),
            }),
            io_utilisation: Some(Threshold {
                high: pct(90.0),
                low: pct(70.0),
            }),
            cpu_idle_gate: None,
        }
    }
}

impl Interference {
    /// Reports this section's violations to `c` (the ranges and cross-field rules its types
    /// cannot express).
    pub(super) fn check(&self, c: &mut Checker) {
        let i = self;
        c.threshold("interference.run_delay", &i.run_delay);
        c.psi("interference.psi.cpu_some", &i.psi.cpu_some);
        c.psi("interference.psi.memory_some", &i.psi.memory_some);
        c.psi("interference.psi.memory_full", &i.psi.memory_full);
        c.psi("interference.psi.io_some", &i.psi.io_some);
        c.psi("interference.psi.io_full", &i.psi.io_full);
        c.threshold("interference.sli", &i.sli);
        if let Some(t) = &i.sli
            && !(t.low.is_finite() && t.low > 0.0 && t.high.is_finite())
        {
            c.invalid(
                "interference.sli.low",
                t.low,
                "SLI thresholds are ratios of p99 to target",
                "0 < low < high",
            );
        }
        c.threshold("interference.io_latency", &i.io_latency);
        c.threshold("interference.wakeup_delay", &i.wakeup_delay);
        c.threshold("interference.io_utilisation", &i.io_utilisation);
    }
}
