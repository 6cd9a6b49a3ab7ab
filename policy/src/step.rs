//! One step's context, which the engine hands to each rule in turn: the policy, the sample, its
//! assessment, the engine's state and the actions so far, with the timers and reasons the rules
//! share.

use crate::action::{Action, Direction, Reason, Rule, Signal};
use crate::params::{Nanos, Params};
use crate::resource::Resource;
use crate::sample::NodeSample;
use crate::signals::{Assessment, Level, nearest_low, worst_high};
use crate::state::State;

/// One step's context for the rules.
pub(crate) struct Step<'a> {
    pub p: &'a Params,
    pub s: &'a NodeSample,
    pub a: &'a Assessment,
    pub now: Nanos,
    pub st: &'a mut State,
    pub out: &'a mut Vec<Action>,
    /// Where the offline quota would be if online usage were all that mattered (computed once).
    pub quota_target: f64,
}

impl Step<'_> {
    /// On the first step (and after a policy change): take over the group's applied quota and
    /// set the group IO limit.
    pub(crate) fn start(&mut self) {
        let budget = self.budget();
        if !self.st.started {
            self.st.started = true;
            self.st.quota = self.s.node.offline_cpu_quota.unwrap_or(budget);
            if !self.st.group_io_squeezed {
                self.st.group_io = self.p.group_io;
                self.out.push(Action::SetOfflineIoLimit {
                    limit: self.p.group_io,
                    reason: Reason::policy(Rule::GroupIo),
                });
            }
        }
        // The budget may shrink (agent.yaml reloaded): never above it.
        self.st.quota = self.st.quota.min(budget).max(0.0);
    }

    /// The most CPU the offline side may have.
    pub fn budget(&self) -> f64 {
        let n = &self.s.node;
        let b = if n.offline_cpu_budget > 0.0 {
            n.offline_cpu_budget
        } else {
            n.cpu_capacity
        };
        if b.is_finite() { b.max(0.0) } else { 0.0 }
    }

    /// Updates the calm timer of `r`.
    pub(crate) fn track(&mut self, r: Resource) {
        let calm = self.level(r).all_low;
        let now = self.now;
        let rs = self.st.res(r);
        if calm {
            rs.low_since.get_or_insert(now);
        } else {
            rs.low_since = None;
        }
    }

    /// The pressure on `r`.
    pub fn level(&self, r: Resource) -> &Level {
        match r {
            Resource::Cpu => &self.a.cpu,
            Resource::Io => &self.a.io,
            Resource::Memory => &self.a.memory,
        }
    }

    /// Whether `d` has passed since `since` (or nothing happened yet).
    pub fn elapsed(&self, since: Option<Nanos>, d: Nanos) -> bool {
        since.is_none_or(|t| self.now.saturating_sub(t) >= d)
    }

    /// Whether `r` has been calm for `d`.
    pub fn calm_for(&self, r: Resource, d: Nanos) -> bool {
        let rs = match r {
            Resource::Cpu => &self.st.cpu,
            Resource::Io => &self.st.io,
            Resource::Memory => &self.st.memory,
        };
        rs.low_since
            .is_some_and(|t| self.now.saturating_sub(t) >= d)
    }

    /// Whether a release step of `r` may happen now: calm for `release_after`, and
    /// `release_cooldown` since its last change.
    pub(crate) fn release_due(&self, r: Resource) -> bool {
        let last = match r {
            Resource::Cpu => self.st.cpu.last_change,
            Resource::Io => self.st.io.last_change,
            Resource::Memory => self.st.memory.last_change,
        };
        self.calm_for(r, self.p.release_after) && self.elapsed(last, self.p.release_cooldown)
    }

    pub(crate) fn after_squeeze_step(&mut self, r: Resource, acted: bool) {
        let now = self.now;
        let rs = self.st.res(r);
        rs.last_squeeze = Some(now);
        if acted {
            rs.last_change = Some(now);
            rs.exhausted_since = None;
        } else {
            rs.exhausted_since.get_or_insert(now);
        }
    }

    /// Whether a VM is paused for `r`.
    pub fn any_paused_for(&self, r: Resource) -> bool {
        self.st
            .vms
            .iter()
            .any(|v| v.live() && v.paused_for == Some(r))
    }

    /// The reason for a squeeze of `r` by `rule`.
    pub fn squeeze_reason(&self, rule: Rule, r: Resource) -> Reason {
        match worst_high(self.p, self.s, r) {
            Some(h) => Reason {
                rule,
                direction: Direction::Squeeze,
                signal: h.signal,
                value: h.value,
                threshold: h.band.high,
                service: h.service,
            },
            None => Reason {
                direction: Direction::Squeeze,
                ..Reason::policy(rule)
            },
        }
    }

    /// The reason for a release of `r` by `rule`.
    pub fn release_reason(&self, rule: Rule, r: Resource) -> Reason {
        match nearest_low(self.p, self.s, r) {
            Some(l) => Reason {
                rule,
                direction: Direction::Release,
                signal: l.signal,
                value: l.value,
                threshold: l.band.low,
                service: l.service,
            },
            None => Reason {
                rule,
                direction: Direction::Release,
                signal: Signal::Policy,
                value: 0.0,
                threshold: 0.0,
                service: None,
            },
        }
    }

    /// Emits a per-VM action and remembers its reason.
    pub fn vm_act(&mut self, i: usize, action: Action) {
        if action.reason().direction == Direction::Squeeze {
            self.st.cpu_vms_squeezed = true;
            self.st.io_vms_squeezed = true;
        }
        self.st.vms[i].last_reason = Some(*action.reason());
        self.out.push(action);
    }
}
