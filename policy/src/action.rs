//! What the engine decides: [`Action`]s, each with a machine-readable [`Reason`] (rule, signal,
//! value, threshold). Reasons are plain `Copy` data, formatted only on demand.

use std::fmt;
use std::time::Duration;

use crate::sample::{IoLimit, VmId};

/// The rule that produced an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// vCPU threads under SCHED_IDLE by QoS class.
    SchedIdle,
    /// The offline group's CPU quota following online usage, and its squeeze and release.
    CpuQuota,
    /// A VM's vCPU quota.
    VcpuThrottle,
    /// The offline group's IO limit.
    GroupIo,
    /// A VM's IO token buckets.
    VmIo,
    /// A VM's memory cgroup limit.
    VmMemoryLimit,
    /// Eviction for node memory or memory pressure.
    MemoryEvict,
    /// Pause and resume.
    Pause,
    /// Eviction for interference that pausing did not cure.
    InterferenceEvict,
}

impl Rule {
    /// Stable snake-case name (logs, metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SchedIdle => "sched_idle",
            Self::CpuQuota => "cpu_quota",
            Self::VcpuThrottle => "vcpu_throttle",
            Self::GroupIo => "group_io",
            Self::VmIo => "vm_io",
            Self::VmMemoryLimit => "vm_memory_limit",
            Self::MemoryEvict => "memory_evict",
            Self::Pause => "pause",
            Self::InterferenceEvict => "interference_evict",
        }
    }
}

/// The signal behind a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Online run-queue delay (s/s).
    RunDelay,
    /// Online run-queue wait per time slice (seconds).
    WakeupDelay,
    /// PSI cpu some (s/s).
    PsiCpuSome,
    /// PSI memory some (s/s).
    PsiMemorySome,
    /// PSI memory full (s/s).
    PsiMemoryFull,
    /// PSI io some (s/s).
    PsiIoSome,
    /// PSI io full (s/s).
    PsiIoFull,
    /// SLI p99 ÷ target.
    Sli,
    /// Online IO latency (seconds).
    IoLatency,
    /// Online disk utilisation (0–1).
    IoUtilisation,
    /// Online CPU usage (cores) against what the node can give (value: usage; threshold:
    /// capacity − headroom).
    OnlineCpu,
    /// Node memory in use (share 0–1).
    NodeMemory,
    /// A fixed setting of the policy (value and threshold are 0).
    Policy,
}

impl Signal {
    /// Stable snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunDelay => "run_delay",
            Self::WakeupDelay => "wakeup_delay",
            Self::PsiCpuSome => "psi_cpu_some",
            Self::PsiMemorySome => "psi_memory_some",
            Self::PsiMemoryFull => "psi_memory_full",
            Self::PsiIoSome => "psi_io_some",
            Self::PsiIoFull => "psi_io_full",
            Self::Sli => "sli",
            Self::IoLatency => "io_latency",
            Self::IoUtilisation => "io_utilisation",
            Self::OnlineCpu => "online_cpu",
            Self::NodeMemory => "node_memory",
            Self::Policy => "policy",
        }
    }

    fn write_value(self, f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
        match self {
            Self::RunDelay
            | Self::PsiCpuSome
            | Self::PsiMemorySome
            | Self::PsiMemoryFull
            | Self::PsiIoSome
            | Self::PsiIoFull => write!(f, "{:.1}ms/s", v * 1e3),
            Self::IoLatency => write!(f, "{:.2}ms", v * 1e3),
            Self::WakeupDelay => write!(f, "{:.1}us", v * 1e6),
            Self::IoUtilisation | Self::NodeMemory => write!(f, "{:.1}%", v * 100.0),
            Self::OnlineCpu => write!(f, "{v:.2} cores"),
            Self::Sli => write!(f, "{v:.2}"),
            Self::Policy => Ok(()),
        }
    }
}

/// Whether an action tightens, loosens or just sets the offline side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Tighter limits, pause, evict.
    Squeeze,
    /// Looser limits, resume.
    Release,
    /// A fixed setting of the policy (a new VM's memory limit and IO buckets, its class's
    /// SCHED_IDLE).
    Set,
}

/// Why an action was taken: rule, signal, value and threshold (for logs, metrics and
/// `coloctl node`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason {
    /// The rule.
    pub rule: Rule,
    /// Tighten, loosen or set.
    pub direction: Direction,
    /// The deciding signal.
    pub signal: Signal,
    /// Its value (units per [`Signal`]).
    pub value: f64,
    /// The threshold it crossed: the `high` threshold for a squeeze, the `low` one for a release.
    pub threshold: f64,
    /// The online service the signal came from, if one.
    pub service: Option<u32>,
}

impl Reason {
    /// A reason for applying a fixed policy setting.
    pub fn policy(rule: Rule) -> Self {
        Self {
            rule,
            direction: Direction::Set,
            signal: Signal::Policy,
            value: 0.0,
            threshold: 0.0,
            service: None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rule.as_str())?;
        if self.signal == Signal::Policy {
            return f.write_str(match self.direction {
                Direction::Set => ": policy setting",
                Direction::Squeeze => ": keeping a squeeze in force",
                Direction::Release => ": no signal above its low threshold",
            });
        }
        write!(f, ": {} ", self.signal.as_str())?;
        self.signal.write_value(f, self.value)?;
        f.write_str(match self.direction {
            Direction::Squeeze => " > ",
            Direction::Release => " < ",
            Direction::Set => " vs ",
        })?;
        self.signal.write_value(f, self.threshold)?;
        if let Some(s) = self.service {
            write!(f, " (service {s})")?;
        }
        Ok(())
    }
}

/// How a VM's memory cgroup is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimitKind {
    /// `memory.max` / `memory.limit_in_bytes`.
    Hard,
    /// `memory.high` / `memory.soft_limit_in_bytes`.
    Soft,
}

/// One change to the offline side. Actions never name an online service: they act on the
/// offline group or on one offline VM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Set the offline group's CPU quota: `cores × period` of CPU time per `period`.
    SetOfflineCpuQuota {
        /// Cores.
        cores: f64,
        /// The CFS period to use.
        period: Duration,
        /// Why.
        reason: Reason,
    },
    /// Set one VM's vCPU quota (`None`: unthrottled).
    SetVmVcpuQuota {
        /// The VM.
        vm: VmId,
        /// Cores, or `None` for no limit.
        cores: Option<f64>,
        /// The CFS period to use.
        period: Duration,
        /// Why.
        reason: Reason,
    },
    /// Put a VM's vCPU threads under SCHED_IDLE (`cpu.idle = 1`) or take them out.
    SetVcpuSchedIdle {
        /// The VM.
        vm: VmId,
        /// SCHED_IDLE on or off.
        idle: bool,
        /// Why.
        reason: Reason,
    },
    /// Set a VM's disk token buckets.
    SetVmIoLimit {
        /// The VM.
        vm: VmId,
        /// The buckets.
        limit: IoLimit,
        /// Why.
        reason: Reason,
    },
    /// Set the offline group's IO throttle (bursts are always `None`).
    SetOfflineIoLimit {
        /// The limit.
        limit: IoLimit,
        /// Why.
        reason: Reason,
    },
    /// Set a VM's memory cgroup limit.
    SetVmMemoryLimit {
        /// The VM.
        vm: VmId,
        /// Bytes.
        bytes: u64,
        /// Hard or soft.
        kind: MemoryLimitKind,
        /// Why.
        reason: Reason,
    },
    /// Stop a VM's vCPUs.
    PauseVm {
        /// The VM.
        vm: VmId,
        /// Why.
        reason: Reason,
    },
    /// Restart a paused VM's vCPUs.
    ResumeVm {
        /// The VM.
        vm: VmId,
        /// Why.
        reason: Reason,
    },
    /// Kill a VM; its job is reported to the launcher as Preempted.
    EvictVm {
        /// The VM.
        vm: VmId,
        /// Why.
        reason: Reason,
    },
}

impl Action {
    /// The VM acted on, if the action is per VM.
    pub fn vm(&self) -> Option<VmId> {
        match *self {
            Self::SetOfflineCpuQuota { .. } | Self::SetOfflineIoLimit { .. } => None,
            Self::SetVmVcpuQuota { vm, .. }
            | Self::SetVcpuSchedIdle { vm, .. }
            | Self::SetVmIoLimit { vm, .. }
            | Self::SetVmMemoryLimit { vm, .. }
            | Self::PauseVm { vm, .. }
            | Self::ResumeVm { vm, .. }
            | Self::EvictVm { vm, .. } => Some(vm),
        }
    }

    /// Why the action was taken.
    pub fn reason(&self) -> &Reason {
        match self {
            Self::SetOfflineCpuQuota { reason, .. }
            | Self::SetVmVcpuQuota { reason, .. }
            | Self::SetVcpuSchedIdle { reason, .. }
            | Self::SetVmIoLimit { reason, .. }
            | Self::SetOfflineIoLimit { reason, .. }
            | Self::SetVmMemoryLimit { reason, .. }
            | Self::PauseVm { reason, .. }
            | Self::ResumeVm { reason, .. }
            | Self::EvictVm { reason, .. } => reason,
        }
    }

    /// Stable snake-case name of the action kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SetOfflineCpuQuota { .. } => "set_offline_cpu_quota",
            Self::SetVmVcpuQuota { .. } => "set_vm_vcpu_quota",
            Self::SetVcpuSchedIdle { .. } => "set_vcpu_sched_idle",
            Self::SetVmIoLimit { .. } => "set_vm_io_limit",
            Self::SetOfflineIoLimit { .. } => "set_offline_io_limit",
            Self::SetVmMemoryLimit { .. } => "set_vm_memory_limit",
            Self::PauseVm { .. } => "pause_vm",
            Self::ResumeVm { .. } => "resume_vm",
            Self::EvictVm { .. } => "evict_vm",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())?;
        if let Some(vm) = self.vm() {
            write!(f, " {vm}")?;
        }
        match self {
            Self::SetOfflineCpuQuota { cores, .. } => write!(f, " {cores:.3} cores")?,
            Self::SetVmVcpuQuota { cores: Some(c), .. } => write!(f, " {c:.3} cores")?,
            Self::SetVmVcpuQuota { cores: None, .. } => f.write_str(" unlimited")?,
            Self::SetVcpuSchedIdle { idle, .. } => write!(f, " {idle}")?,
            Self::SetVmIoLimit { limit, .. } | Self::SetOfflineIoLimit { limit, .. } => {
                write!(f, " bw={:?} iops={:?}", limit.bandwidth, limit.iops)?;
            }
            Self::SetVmMemoryLimit { bytes, kind, .. } => write!(f, " {bytes}B {kind:?}")?,
            _ => {}
        }
        write!(f, " [{}]", self.reason())
    }
}
