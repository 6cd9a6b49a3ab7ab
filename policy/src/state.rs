//! The engine's own memory between steps: intended limits, hysteresis timers, cool-downs.

use crate::action::Reason;
use crate::params::Nanos;
use crate::resource::Resource;
use crate::sample::{IoLimit, NodeSample, VmId, VmRunState, VmSample};

/// Timers of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ResourceState {
    /// Since when every signal of the resource has been below its `low` threshold.
    pub low_since: Option<Nanos>,
    /// The last squeeze step.
    pub last_squeeze: Option<Nanos>,
    /// The last change of any of the resource's knobs (squeeze or release).
    pub last_change: Option<Nanos>,
    /// Since when the resource has been above `high` with nothing left to squeeze.
    pub exhausted_since: Option<Nanos>,
    /// The last pause or eviction for this resource.
    pub last_escalation: Option<Nanos>,
}

/// What the engine has decided for one VM.
///
/// `repr(C)` with `id` and `paused_for` first: [`State::sync_vms`] reads just these two of
/// every VM at every step, so they share a cache line.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub(crate) struct VmState {
    pub id: VmId,
    pub paused_for: Option<Resource>,
    pub evicted: bool,
    /// Not yet given the policy's fixed settings (new VM, or a new policy).
    pub fresh: bool,
    pub sched_idle: bool,
    pub io_squeezed: bool,
    pub vcpu_quota: Option<f64>,
    pub io: IoLimit,
    /// The squeeze baseline (bytes/s, ops/s), fixed when squeezing began.
    pub io_base: (u64, u64),
    pub memory_limit: Option<u64>,
    /// When the engine last asked for a pause or a resume, and the resource of the last pause.
    pub run_state_asked: Option<(Nanos, Resource)>,
    pub last_reason: Option<Reason>,
}

impl VmState {
    /// Takes over a VM as it is (after an agent restart its limits may already be squeezed).
    fn adopt(vm: &VmSample) -> Self {
        let vcpus = f64::from(vm.vcpus);
        Self {
            id: vm.id,
            fresh: true,
            vcpu_quota: vm.limits.vcpu_quota.filter(|q| *q < vcpus),
            sched_idle: vm.limits.sched_idle,
            io: vm.limits.io,
            io_squeezed: false,
            io_base: (0, 0),
            memory_limit: vm.limits.memory_limit,
            paused_for: (vm.state == VmRunState::Paused).then_some(Resource::Cpu),
            run_state_asked: None,
            evicted: false,
            last_reason: None,
        }
    }

    /// Whether rules may act on it (not evicted).
    pub fn live(&self) -> bool {
        !self.evicted
    }

    /// Whether it runs (live and not paused).
    pub fn running(&self) -> bool {
        !self.evicted && self.paused_for.is_none()
    }

    /// Records a pause (`Some`) or a resume (`None`) asked for at `now`.
    pub fn ask_run_state(&mut self, paused_for: Option<Resource>, now: Nanos) {
        let last = self.run_state_asked.map_or(Resource::Cpu, |(_, r)| r);
        self.paused_for = paused_for;
        self.run_state_asked = Some((now, paused_for.unwrap_or(last)));
    }

    /// Whether the sample's run state differs from the engine's belief (paused or not).
    #[inline]
    fn contradicts(&self, observed: VmRunState) -> bool {
        (observed == VmRunState::Paused) != self.paused_for.is_some()
    }

    /// Takes the sample's run state when it still contradicts the engine's last pause or
    /// resume [`RUN_STATE_SETTLE`] after it was asked for: the enforcement failed (a cgroup that
    /// would not freeze, a VMM that did not answer), so the engine must not believe a running
    /// VM paused (it would never pause it again) nor a paused VM running (it would never resume
    /// it). A pause that did not take makes the VM running again, for the pause rule to try
    /// once more after its cool-down; a resume that did not take makes it paused for the
    /// resource of its last pause, for the resume rule to retry. Returns whether it changed.
    fn follow(&mut self, observed: VmRunState, now: Nanos) -> bool {
        if self.evicted {
            return false;
        }
        let settled = self
            .run_state_asked
            .is_none_or(|(at, _)| now.saturating_sub(at) >= RUN_STATE_SETTLE);
        match (observed, self.paused_for) {
            (VmRunState::Running, Some(_)) if settled => {
                self.paused_for = None;
                true
            }
            (VmRunState::Paused, None) if settled => {
                let r = self.run_state_asked.map_or(Resource::Cpu, |(_, r)| r);
                self.paused_for = Some(r);
                true
            }
            _ => false,
        }
    }
}

/// How long a pause or resume may take to show in the samples before the engine takes the
/// sample's word over its own (an OCI runtime retries a freeze for about half a second; a busy
/// node's job table catches up within a few loop periods).
pub(crate) const RUN_STATE_SETTLE: Nanos = 5_000_000_000;

/// All of the engine's state.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub started: bool,
    /// The offline group's intended CPU quota (cores).
    pub quota: f64,
    /// Online CPU usage averaged over `cpu.suppress.usage_window`, and the sample time of the
    /// last update.
    pub online_cpu: Option<(f64, Nanos)>,
    /// `on_interference` classes are under SCHED_IDLE.
    pub idle_squeezed: bool,
    pub group_io: IoLimit,
    pub group_io_squeezed: bool,
    pub group_io_base: (u64, u64),
    pub cpu: ResourceState,
    pub io: ResourceState,
    /// Memory has no squeeze ladder: its timers are never set.
    pub memory: ResourceState,
    pub last_evict: Option<Nanos>,
    pub memory_evicting: bool,
    /// Parallel to the sample's `vms` after [`State::sync_vms`].
    pub vms: Vec<VmState>,
    /// The VM set changed (or the policy did) this step: per-VM fixed settings need a look.
    pub vms_changed: bool,
    /// The `idle_squeezed` value the SCHED_IDLE rule last applied.
    pub idle_applied: Option<bool>,
    /// Some VM may hold a CPU squeeze (vCPU quota, pause): the release ladder must look at the
    /// VMs. Cleared once a release step finds nothing there, so calm ticks skip the VM scans.
    pub cpu_vms_squeezed: bool,
    /// The same for IO (VM buckets, pause).
    pub io_vms_squeezed: bool,
    scratch: Vec<VmState>,
}

impl State {
    /// Lines up the VM states with the sample's VMs (same order), adopting new VMs and
    /// forgetting departed ones, without allocating once the buffers have grown.
    ///
    /// With `follow` (enforce mode, where the engine's actions are applied) a VM whose sample
    /// run state still contradicts the engine's pause or resume takes the sample's (see
    /// [`VmState::follow`]); observing, the engine assumes its decisions hold.
    pub fn sync_vms(&mut self, s: &NodeSample, follow: bool) {
        // The usual case: the same VMs in the same order as last time, each in the run state
        // the engine believes. One pass tells both: this runs for every node at every tick, and
        // a second pass over the VMs to compare run states cost the simulator several percent.
        let mut contradicted = false;
        let same = self.vms.len() == s.vms.len()
            && self.vms.iter().zip(&s.vms).all(|(st, vm)| {
                contradicted |= st.contradicts(vm.state);
                st.id == vm.id
            });
        if !same {
            self.line_up(s);
        }
        if follow && (contradicted || !same) {
            self.follow_run_states(s);
        }
    }

    /// Lines the VM states up with the sample's VMs when they differ from the last step's.
    fn line_up(&mut self, s: &NodeSample) {
        self.vms_changed = true;
        self.cpu_vms_squeezed = true;
        self.io_vms_squeezed = true;
        if self.sync_in_place(s) {
            return;
        }
        self.scratch.clear();
        for (i, vm) in s.vms.iter().enumerate() {
            let st = self
                .source(i, vm.id)
                .map_or_else(|| VmState::adopt(vm), |j| self.vms[j]);
            self.scratch.push(st);
        }
        std::mem::swap(&mut self.vms, &mut self.scratch);
    }

    /// [`VmState::follow`] for every VM (the states line up with the sample's VMs).
    fn follow_run_states(&mut self, s: &NodeSample) {
        let now = crate::params::nanos(s.now);
        let mut changed = false;
        for (st, vm) in self.vms.iter_mut().zip(&s.vms) {
            if st.contradicts(vm.state) {
                changed |= st.follow(vm.state, now);
            }
        }
        if changed {
            self.cpu_vms_squeezed = true;
            self.io_vms_squeezed = true;
        }
    }

    /// Where the state of the sample's VM `id` at index `i` is now: index `i` when it is still
    /// there, else the first state with that id; `None` for a new VM.
    fn source(&self, i: usize, id: VmId) -> Option<usize> {
        match self.vms.get(i) {
            Some(st) if st.id == id => Some(i),
            _ => self.vms.iter().position(|st| st.id == id),
        }
    }

    /// [`State::sync_vms`] without the scratch buffer, when that gives the same states: each
    /// sample VM's state comes from the same index, from an index not rewritten before it is
    /// read (written in index order), or is new — as a `swap_remove` and a `push` leave VMs.
    /// Returns false, changing nothing, otherwise (more than 64 VMs, or a state moving to a
    /// later index over one that is rewritten).
    /// A caller stepping many engines in turn thus writes no second, cold buffer when its
    /// VMs change.
    #[allow(clippy::cast_possible_truncation)]
    fn sync_in_place(&mut self, s: &NodeSample) -> bool {
        const NONE: u8 = u8::MAX;
        const MOST: usize = 64;
        let (n, old) = (s.vms.len(), self.vms.len());
        if n > MOST || old > MOST {
            return false;
        }
        // Where each sample VM's state comes from, as the general path finds it.
        let mut src = [NONE; MOST];
        for (i, vm) in s.vms.iter().enumerate() {
            if let Some(j) = self.source(i, vm.id) {
                // From an earlier index, which must then keep its own state (a new VM or
                // another's state written there would have overwritten it).
                if j < i && usize::from(src[j]) != j {
                    return false;
                }
                src[i] = j as u8;
            }
        }
        for (i, vm) in s.vms.iter().enumerate() {
            let st = match src[i] {
                NONE => VmState::adopt(vm),
                j if usize::from(j) == i => continue,
                j => self.vms[usize::from(j)],
            };
            if i < self.vms.len() {
                self.vms[i] = st;
            } else {
                self.vms.push(st);
            }
        }
        self.vms.truncate(n);
        true
    }

    /// The timers of `r`.
    pub fn res(&mut self, r: Resource) -> &mut ResourceState {
        match r {
            Resource::Cpu => &mut self.cpu,
            Resource::Io => &mut self.io,
            Resource::Memory => &mut self.memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_read_at_every_step_share_a_cache_line() {
        use std::mem::offset_of;
        assert!(offset_of!(VmState, paused_for) < 16 && offset_of!(VmState, id) < 16);
        assert!(offset_of!(VmSample, state) < 16 && offset_of!(VmSample, id) < 16);
    }

    /// The general path alone (what `sync_vms` did before the in-place one).
    fn general(old: &[VmState], s: &NodeSample) -> Vec<VmState> {
        s.vms
            .iter()
            .enumerate()
            .map(|(i, vm)| match old.get(i) {
                Some(st) if st.id == vm.id => *st,
                _ => old
                    .iter()
                    .find(|st| st.id == vm.id)
                    .copied()
                    .unwrap_or_else(|| VmState::adopt(vm)),
            })
            .collect()
    }

    fn sample(ids: &[u64]) -> NodeSample {
        NodeSample {
            vms: ids
                .iter()
                .map(|&id| VmSample {
                    id: VmId(id),
                    ..VmSample::default()
                })
                .collect(),
            ..NodeSample::default()
        }
    }

    #[test]
    fn syncing_in_place_gives_the_states_of_the_general_path() {
        // Random old and new VM lists (ids from a small range: duplicates, moves, new VMs,
        // departures), swap_remove and push histories among them.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut in_place = 0;
        for round in 0..20_000 {
            let old_len = next(12) as usize;
            let old_ids: Vec<u64> = (0..old_len).map(|_| next(16)).collect();
            let new_ids: Vec<u64> = if round % 2 == 0 {
                // As the simulator changes VMs: swap_remove some, push some.
                let mut ids = old_ids.clone();
                for _ in 0..next(3) {
                    if !ids.is_empty() {
                        let i = next(ids.len() as u64) as usize;
                        ids.swap_remove(i);
                    }
                }
                for _ in 0..next(3) {
                    ids.push(100 + next(16));
                }
                ids
            } else {
                (0..next(12)).map(|_| next(16)).collect()
            };
            let mut st = State::default();
            st.sync_vms(&sample(&old_ids), true);
            // Mark each state so that copies can be told apart from adoptions.
            for (k, v) in st.vms.iter_mut().enumerate() {
                v.io_base = (k as u64 + 1, 7);
            }
            let expect = general(&st.vms, &sample(&new_ids));
            let mut probe = st.clone();
            let s = sample(&new_ids);
            if probe.vms.len() != s.vms.len()
                || probe.vms.iter().zip(&s.vms).any(|(a, b)| a.id != b.id)
            {
                in_place += usize::from(probe.sync_in_place(&s));
            }
            st.sync_vms(&s, true);
            assert_eq!(st.vms, expect, "{old_ids:?} -> {new_ids:?}");
        }
        assert!(in_place > 5_000, "the in-place path ran {in_place} times");
    }
}
