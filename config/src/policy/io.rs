//! IO: per-VM token buckets, the offline group's throttle, and how both tighten under
//! IO interference.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::qos::pct;
use super::validate::Checker;
use crate::units::{ByteRate, ByteSize, Percent};

/// IO controls.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IoPolicy {
    /// Each VM's disk token buckets (enforced by the VMM's rate limiter).
    pub vm: VmIoLimits,
    /// The offline cgroup as a whole (`blkio.throttle.*` on v1, `io.max` on v2).
    pub offline_group: GroupIoLimits,
    /// How limits tighten under IO interference and loosen afterwards.
    pub squeeze: IoSqueeze,
}

/// A VM's disk limits when unsqueezed; `null` means unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VmIoLimits {
    /// Sustained read+write bandwidth.
    pub bandwidth: Option<ByteRate>,
    /// One-time burst on top of the bandwidth bucket (bytes), e.g. for start-up.
    pub bandwidth_burst: Option<ByteSize>,
    /// Sustained read+write operations per second.
    pub iops: Option<u64>,
    /// One-time burst of operations on top of the iops bucket.
    pub iops_burst: Option<u64>,
}

impl Default for VmIoLimits {
    fn default() -> Self {
        Self {
            bandwidth: Some(ByteRate::mib_per_sec(100)),
            bandwidth_burst: Some(ByteSize::mib(64)),
            iops: Some(2000),
            iops_burst: Some(500),
        }
    }
}

/// The offline group's disk limits when unsqueezed; `null` means unlimited. (Cgroup throttles
/// have no burst.)
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GroupIoLimits {
    /// Read+write bandwidth of all offline VMs together.
    pub bandwidth: Option<ByteRate>,
    /// Read+write operations per second of all offline VMs together.
    pub iops: Option<u64>,
}

/// Tightening under IO interference. The baseline is the configured limit, or the observed
/// rate when squeezing begins if the limit is unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IoSqueeze {
    /// Whether IO interference tightens IO limits.
    pub enabled: bool,
    /// Share of the current limit removed per squeeze step.
    pub step_down: Percent,
    /// Share of the baseline given back per release step.
    pub step_up: Percent,
    /// No VM's bandwidth is squeezed below this.
    pub min_vm_bandwidth: ByteRate,
    /// No VM's iops are squeezed below this.
    pub min_vm_iops: u64,
    /// The offline group's bandwidth is never squeezed below this.
    pub min_group_bandwidth: ByteRate,
    /// The offline group's iops are never squeezed below this.
    pub min_group_iops: u64,
}

impl Default for IoSqueeze {
    fn default() -> Self {
        Self {
            enabled: true,
            step_down: pct(50.0),
            step_up: pct(10.0),
            min_vm_bandwidth: ByteRate::mib_per_sec(2),
            min_vm_iops: 50,
            min_group_bandwidth: ByteRate::mib_per_sec(4),
            min_group_iops: 100,
        }
    }
}

impl IoPolicy {
    /// Reports this section's violations to `c` (the ranges and cross-field rules its types
    /// cannot express).
    pub(super) fn check(&self, c: &mut Checker) {
        let io = self;
        for (path, rate, burst) in [
            (
                "io.vm.bandwidth_burst",
                io.vm.bandwidth.is_some(),
                io.vm.bandwidth_burst.map(|b| b.to_string()),
            ),
            (
                "io.vm.iops_burst",
                io.vm.iops.is_some(),
                io.vm.iops_burst.map(|b| b.to_string()),
            ),
        ] {
            if let Some(burst) = burst
                && !rate
            {
                let base = path.trim_end_matches("_burst");
                c.conflict(
                    path,
                    burst,
                    base,
                    format!("a burst needs a sustained rate: set {base} too, or set this to null"),
                );
            }
        }
        for (path, zero) in [
            (
                "io.vm.bandwidth",
                io.vm.bandwidth.is_some_and(|b| b.bytes_per_sec() == 0),
            ),
            ("io.vm.iops", io.vm.iops == Some(0)),
            (
                "io.offline_group.bandwidth",
                io.offline_group
                    .bandwidth
                    .is_some_and(|b| b.bytes_per_sec() == 0),
            ),
            ("io.offline_group.iops", io.offline_group.iops == Some(0)),
        ] {
            if zero {
                c.invalid(
                    path,
                    0,
                    "a zero limit stops all IO; use pause for that",
                    "above 0, or null for unlimited",
                );
            }
        }
        let q = &io.squeeze;
        c.positive_percent("io.squeeze.step_down", q.step_down);
        c.positive_percent("io.squeeze.step_up", q.step_up);
        if let Some(b) = io.vm.bandwidth
            && q.min_vm_bandwidth > b
        {
            c.conflict(
                "io.squeeze.min_vm_bandwidth",
                q.min_vm_bandwidth,
                "io.vm.bandwidth",
                format!(
                    "`{}` is above io.vm.bandwidth (`{b}`): the floor must not exceed the limit",
                    q.min_vm_bandwidth
                ),
            );
        }
        if let Some(n) = io.vm.iops
            && q.min_vm_iops > n
        {
            c.conflict(
                "io.squeeze.min_vm_iops",
                q.min_vm_iops,
                "io.vm.iops",
                format!(
                    "`{}` is above io.vm.iops (`{n}`): the floor must not exceed the limit",
                    q.min_vm_iops
                ),
            );
        }
        if let Some(b) = io.offline_group.bandwidth
            && q.min_group_bandwidth > b
        {
            c.conflict(
                "io.squeeze.min_group_bandwidth",
                q.min_group_bandwidth,
                "io.offline_group.bandwidth",
                format!(
                    "`{}` is above io.offline_group.bandwidth (`{b}`): the floor must not exceed the limit",
                    q.min_group_bandwidth
                ),
            );
        }
        if let Some(n) = io.offline_group.iops
            && q.min_group_iops > n
        {
            c.conflict(
                "io.squeeze.min_group_iops",
                q.min_group_iops,
                "io.offline_group.iops",
                format!(
                    "`{}` is above io.offline_group.iops (`{n}`): the floor must not exceed the limit",
                    q.min_group_iops
                ),
            );
        }
    }
}
