//! The engine: a policy, a little state, and [`Engine::step`].

use std::sync::Arc;

use colo_config::Policy;
use colo_config::policy::Mode;

use crate::action::{Action, Reason};
use crate::params::{Params, nanos};
use crate::resource::Resource;
use crate::rules;
use crate::sample::{IoLimit, NodeSample, VmId};
use crate::signals::assess;
use crate::state::State;
use crate::step::Step;

/// The QoS decision engine of one node. Pure: time comes from the samples, effects are the
/// returned actions.
///
/// ```
/// use std::time::Duration;
/// use colo_policy::{Engine, NodeSample, OnlineSample};
///
/// let mut engine = Engine::new(&colo_config::Policy::default());
/// let mut sample = NodeSample::default();
/// sample.now = Duration::from_millis(50);
/// sample.node.cpu_capacity = 8.0;
/// sample.node.offline_cpu_budget = 8.0;
/// sample.online.push(OnlineSample { cpu_usage: 6.0, run_delay: Some(0.001), ..Default::default() });
/// let mut actions = Vec::new();
/// engine.step(&sample, &mut actions);
/// // 8 cores − 6 online − 10 % headroom: the offline quota falls towards 1.2 cores.
/// assert!(actions.iter().any(|a| a.kind() == "set_offline_cpu_quota"));
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    /// Shared between clones: an engine per node (the simulator's) then reads one copy.
    p: Arc<Params>,
    st: State,
}

/// What the engine currently intends for one VM (for `coloctl node`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmView {
    /// The VM.
    pub id: VmId,
    /// vCPU quota in cores, `None` if unthrottled.
    pub vcpu_quota: Option<f64>,
    /// Under SCHED_IDLE.
    pub sched_idle: bool,
    /// Disk token buckets.
    pub io: IoLimit,
    /// IO limits currently squeezed below the policy's.
    pub io_squeezed: bool,
    /// Memory cgroup limit.
    pub memory_limit: Option<u64>,
    /// Paused, and for which resource.
    pub paused_for: Option<Resource>,
    /// Evicted (waiting to disappear from the samples).
    pub evicted: bool,
    /// Why it was last acted on.
    pub last_reason: Option<Reason>,
}

/// The engine's view of the node (for `coloctl node` and reports).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeView {
    /// The offline group's CPU quota in cores.
    pub offline_cpu_quota: f64,
    /// The offline group's IO limit.
    pub offline_io: IoLimit,
    /// Whether `on_interference` classes are under SCHED_IDLE.
    pub sched_idle_squeezed: bool,
    /// Eviction for node memory in progress.
    pub memory_evicting: bool,
}

impl Engine {
    /// An engine for `policy`.
    pub fn new(policy: &Policy) -> Self {
        Self {
            p: Arc::new(Params::new(policy)),
            st: State::default(),
        }
    }

    /// Switches to a new policy, keeping the state (squeezed limits stay where they are and move
    /// under the new policy's rules); the next step re-applies the fixed per-VM settings.
    pub fn set_policy(&mut self, policy: &Policy) {
        self.p = Arc::new(Params::new(policy));
        for vm in &mut self.st.vms {
            vm.fresh = true;
        }
        self.st.vms_changed = true;
        self.st.cpu_vms_squeezed = true;
        self.st.io_vms_squeezed = true;
        self.st.idle_applied = None;
        self.st.started = false;
    }

    /// Asks the CPU to start loading this engine's per-VM state into cache, for a caller that
    /// steps many engines in turn (the simulator, the next node's engine while it steps the
    /// current one). A hint: it reads only the engine's own struct and changes no decision.
    #[inline]
    pub fn prefetch_vm_states(&self) {
        crate::prefetch::prefetch_slice(self.st.vms.as_slice());
    }

    /// `enforce` or `observe`: the caller applies the actions only in `enforce`. The engine
    /// decides the same in both and assumes its decisions hold.
    pub fn mode(&self) -> Mode {
        self.p.mode
    }

    /// Decides on one sample. `actions` is cleared and filled; reusing it (and the sample)
    /// across steps, a step allocates nothing once the buffers have grown.
    pub fn step(&mut self, sample: &NodeSample, actions: &mut Vec<Action>) {
        actions.clear();
        self.st.sync_vms(sample, self.p.mode == Mode::Enforce);
        let a = assess(&self.p, sample);
        let mut x = Step {
            p: &self.p,
            s: sample,
            a: &a,
            now: nanos(sample.now),
            st: &mut self.st,
            out: actions,
            quota_target: 0.0,
        };
        x.start();
        rules::cpu_quota::smooth_usage(&mut x);
        x.quota_target = rules::cpu_quota::target(&x);
        x.track(Resource::Cpu);
        x.track(Resource::Io);
        rules::vm_limits::apply(&mut x);
        rules::cpu_quota::follow_usage(&mut x);
        cpu_ladder(&mut x);
        io_ladder(&mut x);
        rules::sched_idle::apply(&mut x);
        rules::memory_evict::apply(&mut x);
        self.st.vms_changed = false;
    }

    /// [`Engine::step`] returning a new vector (allocates; for tests and the agent's slow path).
    pub fn decide(&mut self, sample: &NodeSample) -> Vec<Action> {
        let mut out = Vec::new();
        self.step(sample, &mut out);
        out
    }

    /// The engine's intent for each VM of the last sample, in the sample's order.
    pub fn vms(&self) -> impl Iterator<Item = VmView> + '_ {
        self.st.vms.iter().map(|v| VmView {
            id: v.id,
            vcpu_quota: v.vcpu_quota,
            sched_idle: v.sched_idle,
            io: v.io,
            io_squeezed: v.io_squeezed,
            memory_limit: v.memory_limit,
            paused_for: v.paused_for,
            evicted: v.evicted,
            last_reason: v.last_reason,
        })
    }

    /// The engine's intent for the offline group.
    pub fn node(&self) -> NodeView {
        NodeView {
            offline_cpu_quota: self.st.quota,
            offline_io: self.st.group_io,
            sched_idle_squeezed: self.st.idle_squeezed,
            memory_evicting: self.st.memory_evicting,
        }
    }
}

/// Squeeze steps when CPU is above `high`: SCHED_IDLE, group quota, vCPU quotas, then pause
/// and evict; release steps in reverse once calm.
fn cpu_ladder(x: &mut Step<'_>) {
    if x.a.cpu.high {
        x.st.idle_squeezed = true;
        if x.elapsed(x.st.cpu.last_squeeze, x.p.squeeze_cooldown) {
            let acted = rules::cpu_quota::squeeze(x) || rules::vcpu_throttle::squeeze(x);
            x.after_squeeze_step(Resource::Cpu, acted);
        }
        rules::pause::pause(x, Resource::Cpu);
        rules::interference_evict::apply(x, Resource::Cpu);
        return;
    }
    x.st.cpu.exhausted_since = None;
    if !x.release_due(Resource::Cpu) {
        return;
    }
    let (mut acted, mut blocked) = (false, false);
    if x.st.cpu_vms_squeezed {
        if rules::pause::resume(x, Resource::Cpu) {
            acted = true;
        } else if x.any_paused_for(Resource::Cpu) {
            blocked = true; // paused VMs resume before anything else is released
        } else if rules::vcpu_throttle::release(x) {
            acted = true;
        } else {
            x.st.cpu_vms_squeezed = false;
        }
    }
    if !acted && !blocked {
        acted = rules::cpu_quota::release(x) || rules::sched_idle::release(x);
    }
    if acted {
        x.st.cpu.last_change = Some(x.now);
    }
}

/// The same for IO: group throttle, VM buckets, then pause and evict.
fn io_ladder(x: &mut Step<'_>) {
    if x.a.io.high {
        if x.elapsed(x.st.io.last_squeeze, x.p.squeeze_cooldown) {
            let acted = rules::group_io::squeeze(x) || rules::vm_io::squeeze(x);
            x.after_squeeze_step(Resource::Io, acted);
        }
        rules::pause::pause(x, Resource::Io);
        rules::interference_evict::apply(x, Resource::Io);
        return;
    }
    x.st.io.exhausted_since = None;
    if !x.release_due(Resource::Io) {
        return;
    }
    let (mut acted, mut blocked) = (false, false);
    if x.st.io_vms_squeezed {
        if rules::pause::resume(x, Resource::Io) {
            acted = true;
        } else if x.any_paused_for(Resource::Io) {
            blocked = true;
        } else if rules::vm_io::release(x) {
            acted = true;
        } else {
            x.st.io_vms_squeezed = false;
        }
    }
    if !acted && !blocked {
        acted = rules::group_io::release(x);
    }
    if acted {
        x.st.io.last_change = Some(x.now);
    }
}
