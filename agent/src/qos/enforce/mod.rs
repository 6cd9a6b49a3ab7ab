//! The enforcer: applies the policy engine's [`Action`]s to the offline side — cgroup files the
//! agent owns (`<root>/offline` and each job's cgroups) and VMs through their control socket —
//! and nothing else: actions never name an online service.
//!
//! Every action is logged with its reason (`tracing`, target `colo::qos`) and counted
//! (`colo_qos_actions_total{action,rule,direction,mode}`); a failed one is logged and counted in
//! `colo_qos_action_errors_total{action}`. In `observe` mode each action is logged as what the
//! agent would do and nothing is written.
//!
//! Slow VM operations (pause, resume, IO token buckets: a control-socket round trip each) run
//! on a worker task, in order, so the loop never waits for a VM.

mod cpu;
mod vm_ops;

use std::collections::HashMap;
use std::time::Duration;

use colo_config::job::ThrottleState;
use colo_policy::{Action, Direction, IoLimit, MemoryLimitKind, Reason, VmId};

use crate::host::cgroup::{CgroupTree, DeviceNumber, IoLimit as CgroupIoLimit, JobCgroup};
use crate::host::clock::now_ms;
use crate::qos::offline::SharedJobs;

use cpu::{GroupCpu, VmCpu};
pub use cpu::{apply_sched_idle_threads, set_thread_sched_idle};
use vm_ops::{VmOp, VmOps};

/// Counter of actions decided, by `action`, `rule`, `direction`, `mode` (`enforce`/`observe`).
pub const METRIC_ACTIONS: &str = "colo_qos_actions_total";
/// Counter of actions that failed to apply, by `action`.
pub const METRIC_ERRORS: &str = "colo_qos_action_errors_total";
/// Gauge: the offline group's CPU quota in force, cores.
pub const METRIC_OFFLINE_QUOTA: &str = "colo_qos_offline_cpu_quota_cores";

/// What the enforcer needs to know about one VM.
#[derive(Debug, Clone)]
pub struct VmTarget {
    /// The job id.
    pub job: String,
    /// Its cgroups.
    pub cgroup: JobCgroup,
    /// Its disks (indexes 0..disks for `set_io_limit`).
    pub disks: usize,
    /// The job's own cores when its vCPU cgroup must bound them (a container, whose processes
    /// may start any number of threads); `None` for a VM (its vCPU threads bound it).
    pub cores: Option<f64>,
    /// Its IO limit is a cgroup throttle on the devices of the offline group's IO limit (a
    /// container's processes do their own IO), not the VMM's token buckets.
    pub cgroup_io: bool,
}

/// Looks up a VM of the engine by id.
pub trait VmLookup {
    /// The VM, if it is still known.
    fn target(&self, vm: VmId) -> Option<&VmTarget>;
}

impl VmLookup for HashMap<VmId, VmTarget> {
    fn target(&self, vm: VmId) -> Option<&VmTarget> {
        self.get(&vm)
    }
}

/// Applies actions. One per agent, driven by the QoS loop.
#[derive(Debug)]
pub struct Enforcer {
    jobs: SharedJobs,
    cgroups: CgroupTree,
    observe: bool,
    group: GroupCpu,
    vms: HashMap<VmId, VmState>,
    io_devices: Vec<DeviceNumber>,
    ops: VmOps,
}

#[derive(Debug)]
struct VmState {
    job: String,
    cpu: VmCpu,
    throttle: ThrottleState,
}

impl Enforcer {
    /// An enforcer for the jobs of `jobs`; the offline group's IO limit applies to
    /// `io_devices` (the disks holding the VMs' disk files). Must run inside a tokio runtime
    /// (it starts the VM-operation worker).
    pub fn new(jobs: SharedJobs, io_devices: Vec<DeviceNumber>) -> Self {
        let cgroups = jobs.cgroups().clone();
        let group = GroupCpu::new(cgroups.offline());
        let ops = VmOps::spawn(jobs.clone());
        Self {
            jobs,
            cgroups,
            observe: false,
            group,
            vms: HashMap::new(),
            io_devices,
            ops,
        }
    }

    /// `observe` mode: log, write nothing.
    pub fn set_observe(&mut self, observe: bool) {
        if observe != self.observe {
            tracing::info!(target: "colo::qos", observe, "enforcer mode changed");
        }
        self.observe = observe;
    }

    /// Whether the enforcer only logs.
    pub fn observe(&self) -> bool {
        self.observe
    }

    /// The offline group's CPU quota in force (cores), `None` when unlimited or unknown.
    pub fn offline_quota(&self) -> Option<f64> {
        self.group.applied_cores()
    }

    /// The cgroup tree.
    pub fn cgroups(&self) -> &CgroupTree {
        &self.cgroups
    }

    /// Writes the own-cores limit of every job that has one and that the enforcer does not know
    /// yet (a container that just started), under the group's quota. It is the job's size, not
    /// a QoS action: it is written in observe mode too.
    pub fn bound_new<'a>(&mut self, targets: impl Iterator<Item = (VmId, &'a VmTarget)>) {
        let cap = self.group.cap_cores();
        for (vm, t) in targets {
            let Some(cores) = t.cores else { continue };
            if self.vms.contains_key(&vm) {
                continue;
            }
            let st = self.vm_state(vm, t);
            if let Err(e) = st.cpu.set_ceiling(cores, cap) {
                tracing::warn!(target: "colo::qos", job = %t.job, error = %e, "cannot bound the job's cores");
            }
        }
    }

    /// Forgets VMs that are no longer live (their cgroups are gone).
    pub fn retain(&mut self, live: impl Fn(VmId) -> bool) {
        self.vms.retain(|id, _| live(*id));
    }

    /// Applies `actions` in order.
    pub fn apply(&mut self, actions: &[Action], vms: &dyn VmLookup) {
        for a in actions {
            let r = a.reason();
            let mode = if self.observe { "observe" } else { "enforce" };
            metrics::counter!(METRIC_ACTIONS, "action" => a.kind(), "rule" => r.rule.as_str(),
                "direction" => direction(r.direction), "mode" => mode)
            .increment(1);
            let job = a.vm().and_then(|v| vms.target(v)).map(|t| t.job.as_str());
            if self.observe {
                tracing::info!(target: "colo::qos", job = job.unwrap_or("-"), action = %a, "observe: would apply");
                if let (Some(vm), Some(t)) = (a.vm(), a.vm().and_then(|v| vms.target(v))) {
                    let jobs = self.jobs.clone();
                    let st = self.vm_state(vm, t);
                    st.throttle.reason = format!("observe: would {a}");
                    jobs.set_throttle(&t.job, st.throttle.clone());
                }
                continue;
            }
            tracing::info!(target: "colo::qos", job = job.unwrap_or("-"), action = %a, "apply");
            if let Err(e) = self.apply_one(a, vms) {
                metrics::counter!(METRIC_ERRORS, "action" => a.kind()).increment(1);
                tracing::warn!(target: "colo::qos", job = job.unwrap_or("-"), action = %a, error = %e, "action failed");
            }
        }
    }

    fn vm_state(&mut self, vm: VmId, t: &VmTarget) -> &mut VmState {
        self.vms.entry(vm).or_insert_with(|| {
            let mut cpu = VmCpu::new(
                t.cgroup
                    .threads(crate::host::cgroup::ThreadGroup::Vcpu)
                    .clone(),
            );
            if let Some(c) = t.cores {
                // Not written here: the next write (`set`, `reapply`) honours it.
                cpu.bound_by(c);
            }
            VmState {
                job: t.job.clone(),
                cpu,
                throttle: ThrottleState::default(),
            }
        })
    }

    fn apply_one(&mut self, a: &Action, vms: &dyn VmLookup) -> Result<(), String> {
        match *a {
            Action::SetOfflineCpuQuota { cores, period, .. } => {
                let states: Vec<&mut VmCpu> = self.vms.values_mut().map(|s| &mut s.cpu).collect();
                self.group.set(cores, period, states)?;
                metrics::gauge!(METRIC_OFFLINE_QUOTA).set(cores);
                Ok(())
            }
            Action::SetOfflineIoLimit { limit, .. } => {
                for d in &self.io_devices {
                    self.cgroups
                        .offline()
                        .set_io_limit(&cgroup_io(*d, &limit))
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            _ => {
                let vm = a.vm().ok_or("action without a VM")?;
                let t = vms
                    .target(vm)
                    .ok_or_else(|| format!("{vm} is no longer live"))?;
                let group_cap = self.group.cap_cores();
                let reason = *a.reason();
                let jobs = self.jobs.clone();
                let devices = self.io_devices.clone();
                let st = self.vm_state(vm, t);
                let mut r = apply_vm(a, t, st, group_cap);
                if let (Action::SetVmIoLimit { limit, .. }, true) = (a, t.cgroup_io) {
                    let node = t.cgroup.threads(crate::host::cgroup::ThreadGroup::Vcpu);
                    for d in &devices {
                        if let Err(e) = node.set_io_limit(&cgroup_io(*d, limit)) {
                            r = Err(e.to_string());
                        }
                    }
                }
                st.throttle.reason = reason_text(&reason);
                st.throttle.changed_unix_ms = now_ms();
                jobs.set_throttle(&st.job, st.throttle.clone());
                let op = match *a {
                    Action::PauseVm { .. } => Some(VmOp::Pause {
                        job: t.job.clone(),
                        reason: reason_text(&reason),
                    }),
                    Action::ResumeVm { .. } => Some(VmOp::Resume {
                        job: t.job.clone(),
                        reason: reason_text(&reason),
                    }),
                    Action::SetVmIoLimit { limit, .. } if !t.cgroup_io => Some(VmOp::IoLimit {
                        job: t.job.clone(),
                        disks: t.disks,
                        bw: limit.bandwidth.unwrap_or(0),
                        iops: limit.iops.unwrap_or(0),
                    }),
                    Action::EvictVm { .. } => {
                        self.jobs.evict(&t.job, &reason_text(&reason))?;
                        None
                    }
                    _ => None,
                };
                if let Some(op) = op {
                    self.ops.send(op);
                }
                r
            }
        }
    }
}

/// Applies the per-VM cgroup actions and records the throttle state of all per-VM actions.
fn apply_vm(
    a: &Action,
    t: &VmTarget,
    st: &mut VmState,
    group_cap: Option<f64>,
) -> Result<(), String> {
    match *a {
        Action::SetVmVcpuQuota { cores, period, .. } => {
            st.throttle.vcpu_quota_millicores = cores.map_or(0, |c| (c * 1000.0).round() as u64);
            st.cpu.set(cores, period, group_cap)
        }
        Action::SetVcpuSchedIdle { idle, .. } => {
            st.throttle.sched_idle = idle;
            st.cpu.set_idle(idle)
        }
        Action::SetVmMemoryLimit { bytes, kind, .. } => {
            st.throttle.memory_limit_bytes = bytes;
            let node = t.cgroup.job();
            match kind {
                MemoryLimitKind::Hard => node.set_memory_max(Some(bytes)),
                MemoryLimitKind::Soft => node.set_memory_high(Some(bytes)),
            }
            .map_err(|e| e.to_string())
        }
        Action::SetVmIoLimit { limit, .. } => {
            st.throttle.io_bandwidth_bps = limit.bandwidth.unwrap_or(0);
            st.throttle.io_iops = limit.iops.unwrap_or(0);
            Ok(())
        }
        Action::PauseVm { .. } => {
            st.throttle.paused = true;
            Ok(())
        }
        Action::ResumeVm { .. } => {
            st.throttle.paused = false;
            Ok(())
        }
        Action::EvictVm { .. }
        | Action::SetOfflineCpuQuota { .. }
        | Action::SetOfflineIoLimit { .. } => Ok(()),
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Squeeze => "squeeze",
        Direction::Release => "release",
        Direction::Set => "set",
    }
}

fn reason_text(r: &Reason) -> String {
    r.to_string()
}

/// The cgroup IO throttle for a policy limit: the bandwidth and operation limits apply to reads
/// and writes each (cgroup throttles count them separately).
fn cgroup_io(device: DeviceNumber, l: &IoLimit) -> CgroupIoLimit {
    let bw = l.bandwidth.unwrap_or(0);
    let iops = l.iops.unwrap_or(0);
    CgroupIoLimit {
        device,
        read_bps: bw,
        write_bps: bw,
        read_iops: iops,
        write_iops: iops,
    }
}

/// How long a VM operation may take before the worker logs it as slow.
pub const SLOW_VM_OP: Duration = Duration::from_millis(500);
