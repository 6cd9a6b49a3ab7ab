//! The policy as plain numbers, computed once per policy so each step only compares floats.

use std::time::Duration;

use colo_config::Policy;
use colo_config::policy::{
    EvictionKey, Mode, PsiScope, QosClassName, SchedIdleMode, Threshold, VmMemoryLimitMode,
};
use colo_config::units::{DurationValue, StallRate};

use crate::action::MemoryLimitKind;
use crate::sample::IoLimit;

/// A signal's squeeze (`high`) and release (`low`) thresholds in the sample's units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Band {
    pub high: f64,
    pub low: f64,
}

fn stall(t: &Option<Threshold<StallRate>>) -> Option<Band> {
    t.map(|t| Band {
        high: t.high.fraction(),
        low: t.low.fraction(),
    })
}

/// A duration threshold as a band in seconds.
fn seconds(t: &Option<Threshold<DurationValue>>) -> Option<Band> {
    t.map(|t| Band {
        high: t.high.0.as_secs_f64(),
        low: t.low.0.as_secs_f64(),
    })
}

/// One QoS class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClassParams {
    pub rank: u8,
    pub cpu_floor: f64,
    pub io_floor: f64,
    pub sched_idle: SchedIdleMode,
}

/// Nanoseconds.
pub(crate) type Nanos = u64;

pub(crate) fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Every number the rules use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub mode: Mode,
    pub batch: ClassParams,
    pub mid: ClassParams,

    pub suppress: bool,
    pub headroom: f64,
    pub min_quota: f64,
    pub usage_window: Nanos,
    pub quota_step_down: f64,
    pub quota_step_up: f64,
    pub cfs_period: Duration,

    pub vcpu_throttle: bool,
    pub vcpu_step_down: f64,
    /// Largest step when the signal is far above its threshold (fraction of the vCPUs;
    /// `vcpu_step_down` when the policy does not scale steps).
    pub vcpu_max_step_down: f64,
    pub vcpu_step_up: f64,
    pub vcpu_min: f64,

    pub evict_at: f64,
    pub stop_at: f64,
    pub vm_memory: Option<MemoryLimitKind>,
    pub vm_memory_overhead: u64,

    pub vm_io: IoLimit,
    pub group_io: IoLimit,
    pub io_squeeze: bool,
    pub io_step_down: f64,
    pub io_step_up: f64,
    pub min_vm_bw: u64,
    pub min_vm_iops: u64,
    pub min_group_bw: u64,
    pub min_group_iops: u64,

    pub run_delay: Option<Band>,
    pub wakeup_delay: Option<Band>,
    pub psi_scope: PsiScope,
    pub psi_cpu_some: Option<Band>,
    pub psi_memory_some: Option<Band>,
    pub psi_memory_full: Option<Band>,
    pub psi_io_some: Option<Band>,
    pub psi_io_full: Option<Band>,
    pub sli: Option<Band>,
    pub io_latency: Option<Band>,
    pub io_utilisation: Option<Band>,
    pub cpu_idle_gate: Option<f64>,

    pub squeeze_cooldown: Nanos,
    pub release_after: Nanos,
    pub release_cooldown: Nanos,
    pub pause_after: Option<Nanos>,
    pub evict_after: Option<Nanos>,
    pub resume_after: Nanos,

    pub order: Vec<EvictionKey>,
    pub max_evictions_per_step: u32,
    pub evict_cooldown: Nanos,
}

impl Params {
    pub(crate) fn new(p: &Policy) -> Self {
        let class = |c: &colo_config::policy::QosClass| ClassParams {
            rank: c.eviction_rank,
            cpu_floor: c.cpu_floor.fraction(),
            io_floor: c.io_floor.fraction(),
            sched_idle: c.sched_idle,
        };
        let s = &p.cpu.suppress;
        let v = &p.cpu.vcpu_throttle;
        let io = &p.io;
        let i = &p.interference;
        let t = &p.timing;
        Self {
            mode: p.mode,
            batch: class(&p.qos_classes.batch),
            mid: class(&p.qos_classes.mid),
            suppress: s.enabled,
            headroom: s.headroom.fraction(),
            min_quota: s.min_offline_quota.get(),
            usage_window: nanos(s.usage_window),
            quota_step_down: s.step_down.fraction(),
            quota_step_up: s.step_up.fraction(),
            cfs_period: s.cfs_period,
            vcpu_throttle: v.enabled,
            vcpu_step_down: v.step_down.fraction(),
            vcpu_max_step_down: v
                .max_step_down
                .map_or(v.step_down.fraction(), |m| m.fraction()),
            vcpu_step_up: v.step_up.fraction(),
            vcpu_min: v.min_per_vm.get(),
            evict_at: p.memory.evict_at.fraction(),
            stop_at: p.memory.stop_at.fraction(),
            vm_memory: match p.memory.vm_limit.mode {
                VmMemoryLimitMode::Hard => Some(MemoryLimitKind::Hard),
                VmMemoryLimitMode::Soft => Some(MemoryLimitKind::Soft),
                VmMemoryLimitMode::None => None,
            },
            vm_memory_overhead: p.memory.vm_limit.overhead.bytes(),
            vm_io: IoLimit {
                bandwidth: io.vm.bandwidth.map(|b| b.bytes_per_sec()),
                bandwidth_burst: io.vm.bandwidth_burst.map(|b| b.bytes()),
                iops: io.vm.iops,
                iops_burst: io.vm.iops_burst,
            },
            group_io: IoLimit {
                bandwidth: io.offline_group.bandwidth.map(|b| b.bytes_per_sec()),
                bandwidth_burst: None,
                iops: io.offline_group.iops,
                iops_burst: None,
            },
            io_squeeze: io.squeeze.enabled,
            io_step_down: io.squeeze.step_down.fraction(),
            io_step_up: io.squeeze.step_up.fraction(),
            min_vm_bw: io.squeeze.min_vm_bandwidth.bytes_per_sec(),
            min_vm_iops: io.squeeze.min_vm_iops,
            min_group_bw: io.squeeze.min_group_bandwidth.bytes_per_sec(),
            min_group_iops: io.squeeze.min_group_iops,
            run_delay: stall(&i.run_delay),
            wakeup_delay: seconds(&i.wakeup_delay),
            psi_scope: i.psi.scope,
            psi_cpu_some: stall(&i.psi.cpu_some),
            psi_memory_some: stall(&i.psi.memory_some),
            psi_memory_full: stall(&i.psi.memory_full),
            psi_io_some: stall(&i.psi.io_some),
            psi_io_full: stall(&i.psi.io_full),
            sli: i.sli.map(|t| Band {
                high: t.high,
                low: t.low,
            }),
            io_latency: seconds(&i.io_latency),
            io_utilisation: i.io_utilisation.map(|t| Band {
                high: t.high.fraction(),
                low: t.low.fraction(),
            }),
            cpu_idle_gate: i.cpu_idle_gate.map(|g| g.fraction()),
            squeeze_cooldown: nanos(t.squeeze_cooldown),
            release_after: nanos(t.release_after),
            release_cooldown: nanos(t.release_cooldown),
            pause_after: t.pause_after.map(nanos),
            evict_after: t.evict_after.map(nanos),
            resume_after: nanos(t.resume_after),
            order: p.eviction.order.clone(),
            max_evictions_per_step: p.eviction.max_per_step,
            evict_cooldown: nanos(p.eviction.cooldown),
        }
    }

    pub(crate) fn class(&self, c: QosClassName) -> &ClassParams {
        match c {
            QosClassName::Batch => &self.batch,
            QosClassName::Mid => &self.mid,
        }
    }
}
