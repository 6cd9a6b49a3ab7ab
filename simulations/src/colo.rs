//! colo's modes: every node runs the real `colo_policy::Engine` on a `NodeSample` of its
//! modelled state at every tick, and its actions drive the node's limits — or, observing, are
//! only counted.
//!
//! The sample is filled from the contention model the way the agent fills it from its monitors
//! (one online service per online node, with run delay, cgroup PSI, IO latency and
//! utilisation, and an SLI: the modelled p99 over the SLO target). The node's report to the
//! scheduler scores `NodeSample::interference_signals()` of that same sample, as the agent's
//! reporter does. Sample and action buffers are reused, so a warm node allocates nothing.

use std::time::Duration;

use colo_config::Policy;
use colo_config::policy::{Mode as PolicyMode, QosClassName};
use colo_policy::scoring::InterferenceSignals;
use colo_policy::{
    Action, Engine, IoLimit, MemoryLimitKind, NodeSample, NodeStats, OnlineSample, VmId, VmLimits,
    VmRunState, VmSample,
};

use crate::cluster::{self, Progress, RunError, RunResult, SimConfig};
use crate::contention::GroupLimits;
use crate::controller::{ActionCounts, Admission, Controller, TickView};
use crate::mode::{Mode, ModeSettings};
use crate::trace::{NodeSpec, TraceSource};
use crate::vm::{MAX_VMS_PER_NODE, Vm};

/// Average size of one disk request, for the IO operations per second the sample carries (the
/// model counts bytes).
const IO_REQUEST_BYTES: u64 = 64 * 1024;

/// colo's policy engine managing each node.
#[derive(Debug)]
pub struct ColoController {
    engine: Engine,
    enforce: bool,
}

impl ColoController {
    /// A controller running `policy`; `enforce` false is observe mode (the policy's own `mode`
    /// field is overridden either way, so one policy file serves both rows).
    #[must_use]
    pub fn new(policy: &Policy, enforce: bool) -> Self {
        let mut p = policy.clone();
        p.mode = if enforce {
            PolicyMode::Enforce
        } else {
            PolicyMode::Observe
        };
        Self {
            engine: Engine::new(&p),
            enforce,
        }
    }
}

/// Per-node state of [`ColoController`]: the engine and its reused buffers.
#[derive(Debug)]
pub struct ColoNode {
    engine: Engine,
    sample: NodeSample,
    actions: Vec<Action>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn seconds(s: f64) -> Duration {
    Duration::from_nanos(crate::float::to_u64(s.max(0.0) * 1e9))
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn fill(sample: &mut NodeSample, view: &mut TickView<'_>, batch_pool: bool) {
    let c = view.contention;
    let cores = view.capacity.cores;
    sample.now = view.now;
    sample.node = NodeStats {
        cpu_capacity: cores,
        cpu_usage: c.online_cpu + c.offline_cpu,
        offline_cpu_usage: c.offline_cpu,
        offline_cpu_budget: cores,
        offline_cpu_quota: finite(view.group.cpu_quota),
        memory_total: view.capacity.memory_bytes,
        memory_used: c.memory_used,
        psi: Some(c.psi),
    };
    sample.online.clear();
    if !batch_pool {
        sample.online.push(OnlineSample {
            service: 0,
            cpu_usage: c.online_cpu,
            run_delay: Some(c.run_delay),
            // The contention model has no per-wake-up figure (the default policy reads none).
            wakeup_delay: None,
            psi: Some(c.psi),
            memory_usage: view.online.memory_bytes,
            io_latency: Some(seconds(c.io_latency)),
            io_utilisation: Some(c.disk_utilisation),
            sli_ratio: Some(c.p99_ms / view.slo_p99_ms),
        });
    }
    // VMs mostly stay from one tick to the next: rewrite only what moves. Nothing moved when
    // the contention model reused the VMs' grants (same VMs, limits and grants as at the last
    // tick, which wrote them here). Otherwise usage and IO change every tick; limits and run
    // state only when `limits_dirty` says so.
    if view.vms_unchanged && sample.vms.len() == view.vms.len() {
        debug_assert!(
            mirrors(sample, view.vms),
            "a reused grant differs from the sample"
        );
        return;
    }
    sample.vms.truncate(view.vms.len());
    for (i, vm) in view.vms.iter_mut().enumerate() {
        let l = &vm.load;
        match sample.vms.get_mut(i) {
            Some(s) if s.id.0 == vm.id => {
                s.cpu_usage = f64::from(l.cpu);
                s.throttled = f64::from(l.throttled);
                if l.io > 0.0 || s.io_bytes_per_sec != 0 {
                    (s.io_bytes_per_sec, s.io_ops_per_sec) = io_rates(l.io);
                }
                if vm.limits_dirty {
                    s.state = run_state(l.paused);
                    s.limits = limits(vm);
                }
            }
            slot => {
                let (io_bytes_per_sec, io_ops_per_sec) = io_rates(l.io);
                let full = VmSample {
                    id: VmId(vm.id),
                    class: QosClassName::Batch,
                    priority: 0,
                    started_at: Duration::from_secs(u64::from(vm.started_s)),
                    vcpus: u32::from(vm.spec.vcpus),
                    guest_memory: u64::from(vm.spec.request_mib) << 20,
                    memory_usage: l.memory_bytes,
                    cpu_usage: f64::from(l.cpu),
                    throttled: f64::from(l.throttled),
                    io_bytes_per_sec,
                    io_ops_per_sec,
                    state: run_state(l.paused),
                    limits: limits(vm),
                };
                match slot {
                    Some(s) => *s = full,
                    None => sample.vms.push(full),
                }
            }
        }
        vm.limits_dirty = false;
    }
}

/// Whether the sample's VMs hold what [`fill`] would write for `vms` (checked in debug builds
/// whenever `fill` skips them).
fn mirrors(sample: &NodeSample, vms: &[Vm]) -> bool {
    sample.vms.iter().zip(vms).all(|(s, vm)| {
        let l = &vm.load;
        s.id.0 == vm.id
            && s.cpu_usage.to_bits() == f64::from(l.cpu).to_bits()
            && s.throttled.to_bits() == f64::from(l.throttled).to_bits()
            && (s.io_bytes_per_sec, s.io_ops_per_sec) == io_rates(l.io)
            && s.state == run_state(l.paused)
            && s.limits == limits(vm)
    })
}

/// Bytes and (nominal) requests per second of a VM's disk traffic.
fn io_rates(io: f32) -> (u64, u64) {
    let bytes = crate::float::to_u64(f64::from(io));
    // Unsigned: a shift.
    (bytes, bytes / IO_REQUEST_BYTES)
}

fn run_state(paused: bool) -> VmRunState {
    if paused {
        VmRunState::Paused
    } else {
        VmRunState::Running
    }
}

/// The limits in force on `vm`, as the sample reports them.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn limits(vm: &Vm) -> VmLimits {
    let l = &vm.load;
    VmLimits {
        vcpu_quota: finite(f64::from(l.vcpu_quota)),
        sched_idle: l.low_weight,
        io: IoLimit {
            bandwidth: finite(f64::from(l.io_limit)).map(|b| b as u64),
            ..IoLimit::default()
        },
        memory_limit: (vm.memory_limit() != u64::MAX).then_some(vm.memory_limit()),
    }
}

fn count(a: &Action, c: &mut ActionCounts) {
    match a {
        Action::SetOfflineCpuQuota { .. } => c.cpu_quota += 1,
        Action::SetVmVcpuQuota { .. } => c.vcpu_quota += 1,
        Action::SetVcpuSchedIdle { .. } => c.sched_idle += 1,
        Action::SetVmIoLimit { .. } | Action::SetOfflineIoLimit { .. } => c.io_limit += 1,
        Action::SetVmMemoryLimit { .. } => c.memory_limit += 1,
        Action::PauseVm { .. } => c.pause += 1,
        Action::ResumeVm { .. } => c.resume += 1,
        Action::EvictVm { .. } => c.evict += 1,
    }
}

/// The VM with `id`, marked as having its limits changed.
fn vm_mut(vms: &mut [Vm], id: VmId) -> Option<&mut Vm> {
    let vm = vms.iter_mut().find(|v| v.id == id.0)?;
    vm.limits_dirty = true;
    Some(vm)
}

fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    *slot = value;
    changed
}

#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn limit_f32(x: Option<f64>) -> f32 {
    x.map_or(f32::INFINITY, |v| v.max(0.0) as f32)
}

#[allow(clippy::cast_precision_loss)]
fn bandwidth(l: &IoLimit) -> f64 {
    l.bandwidth.map_or(f64::INFINITY, |b| b as f64)
}

/// Applies one action to the node; true when a limit changed.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn apply(a: &Action, vms: &mut [Vm], group: &mut GroupLimits) -> bool {
    match *a {
        Action::SetOfflineCpuQuota { cores, .. } => set(&mut group.cpu_quota, cores),
        Action::SetOfflineIoLimit { ref limit, .. } => set(&mut group.io_limit, bandwidth(limit)),
        Action::SetVmVcpuQuota { vm, cores, .. } => {
            vm_mut(vms, vm).is_some_and(|v| set(&mut v.load.vcpu_quota, limit_f32(cores)))
        }
        Action::SetVcpuSchedIdle { vm, idle, .. } => {
            vm_mut(vms, vm).is_some_and(|v| set(&mut v.load.low_weight, idle))
        }
        Action::SetVmIoLimit { vm, ref limit, .. } => {
            vm_mut(vms, vm).is_some_and(|v| set(&mut v.load.io_limit, bandwidth(limit) as f32))
        }
        // A soft limit (memory.high) only slows reclaim, which the model does not charge.
        Action::SetVmMemoryLimit {
            vm, bytes, kind, ..
        } => {
            kind == MemoryLimitKind::Hard
                && vm_mut(vms, vm).is_some_and(|v| v.set_memory_limit(bytes))
        }
        Action::PauseVm { vm, .. } => {
            vm_mut(vms, vm).is_some_and(|v| set(&mut v.load.paused, true))
        }
        Action::ResumeVm { vm, .. } => {
            vm_mut(vms, vm).is_some_and(|v| set(&mut v.load.paused, false))
        }
        Action::EvictVm { vm, .. } => vm_mut(vms, vm).is_some_and(|v| set(&mut v.evicted, true)),
    }
}

impl Controller for ColoController {
    type State = ColoNode;

    fn name(&self) -> &'static str {
        if self.enforce {
            Mode::Colo.name()
        } else {
            Mode::Observe.name()
        }
    }

    fn admission(&self) -> Admission {
        Admission::Reported
    }

    fn init(&self, _: &NodeSpec) -> ColoNode {
        ColoNode {
            engine: self.engine.clone(),
            sample: NodeSample {
                online: Vec::with_capacity(1),
                vms: Vec::with_capacity(MAX_VMS_PER_NODE),
                ..NodeSample::default()
            },
            actions: Vec::with_capacity(4 * MAX_VMS_PER_NODE),
        }
    }

    fn initial_group(&self, _: &NodeSpec) -> GroupLimits {
        GroupLimits::default()
    }

    fn admit(&self, _: &mut ColoNode, _: &mut Vm) {}

    fn tick(&self, st: &mut ColoNode, view: &mut TickView<'_>, counts: &mut ActionCounts) -> bool {
        let batch_pool = view.batch_pool;
        fill(&mut st.sample, view, batch_pool);
        st.engine.step(&st.sample, &mut st.actions);
        let mut changed = false;
        for a in &st.actions {
            count(a, counts);
            if self.enforce {
                changed |= apply(a, view.vms, view.group);
            }
        }
        changed
    }

    fn prefetch(&self, st: &ColoNode, part: u32) {
        match part {
            0 => crate::prefetch::prefetch_lines(&st.sample.vms),
            1 => st.engine.prefetch_vm_states(),
            // The sample's online service (read and rewritten at every tick) and the first
            // lines of the action buffer (written when the engine acts): two more allocations
            // per node, missed in cache at its first tick without this.
            2 => {
                crate::prefetch::prefetch_bytes(
                    st.sample.online.as_ptr().cast::<u8>(),
                    std::mem::size_of::<OnlineSample>(),
                );
                crate::prefetch::prefetch_bytes(
                    st.actions.as_ptr().cast::<u8>(),
                    2 * std::mem::size_of::<Action>(),
                );
            }
            _ => {}
        }
    }

    fn signals(&self, st: &ColoNode) -> Option<InterferenceSignals> {
        Some(st.sample.interference_signals())
    }
}

/// Runs `mode` (colo or colo-observe) with the policy of `settings` (default policy if none).
///
/// # Errors
/// [`RunError`] from the run.
pub fn run(
    mode: Mode,
    trace: &mut dyn TraceSource,
    cfg: &SimConfig,
    settings: &ModeSettings,
    progress: &dyn Progress,
) -> Result<RunResult, RunError> {
    let policy = settings.policy.clone().unwrap_or_default();
    let ctrl = ColoController::new(&policy, mode == Mode::Colo);
    cluster::run(trace, cfg, &ctrl, progress)
}
