//! A test harness: a node with one online service, VMs, a clock, and an enforcer that applies
//! the engine's actions back onto the sample (as the agent's would).

use std::time::Duration;

use colo_config::policy::QosClassName;
use colo_config::{Policy, Source, parse_policy};

use crate::action::Action;
use crate::engine::Engine;
use crate::params::Params;
use crate::sample::{IoLimit, NodeSample, OnlineSample, VmId, VmRunState, VmSample};

pub(crate) struct Harness {
    pub engine: Engine,
    pub sample: NodeSample,
    pub policy: Policy,
    /// Evicted VMs stay in the samples (as in `observe` mode, or before the VMM has exited).
    pub keep_evicted_vms: bool,
    acts: Vec<Action>,
}

pub(crate) fn policy(body: &str) -> Policy {
    let text = format!("apiVersion: colo/v1\nkind: Policy\n{body}");
    parse_policy(&[Source::new("test.yaml", text)]).unwrap_or_else(|e| panic!("{e}"))
}

impl Harness {
    pub fn new(body: &str) -> Self {
        let policy = policy(body);
        let mut sample = NodeSample::default();
        sample.node.cpu_capacity = 4.0;
        sample.online.push(OnlineSample {
            service: 0,
            run_delay: Some(0.0),
            ..Default::default()
        });
        Self {
            engine: Engine::new(&policy),
            sample,
            policy,
            keep_evicted_vms: false,
            acts: Vec::new(),
        }
    }

    pub fn capacity(&mut self, cores: f64) {
        self.sample.node.cpu_capacity = cores;
    }

    pub fn online_cpu(&mut self, cores: f64) {
        self.sample.online[0].cpu_usage = cores;
    }

    pub fn run_delay(&mut self, seconds_per_second: f64) {
        self.sample.online[0].run_delay = Some(seconds_per_second);
    }

    pub fn io_latency_ms(&mut self, ms: u64) {
        self.sample.online[0].io_latency = Some(Duration::from_millis(ms));
    }

    pub fn vm(&mut self, id: u64, vcpus: u32, memory_mib: u64) {
        self.sample.vms.push(VmSample {
            id: VmId(id),
            vcpus,
            guest_memory: memory_mib << 20,
            started_at: self.sample.now,
            ..Default::default()
        });
    }

    pub fn vm_class(&mut self, id: u64, class: QosClassName) {
        self.vm(id, 1, 256);
        let last = self.sample.vms.len() - 1;
        self.sample.vms[last].class = class;
    }

    pub fn policy_vm_io(&self) -> IoLimit {
        Params::new(&self.policy).vm_io
    }

    pub fn tick(&mut self, ms: u64) -> Vec<Action> {
        self.sample.now += Duration::from_millis(ms);
        self.engine.step(&self.sample, &mut self.acts);
        let acts = self.acts.clone();
        apply(&mut self.sample, &acts, self.keep_evicted_vms);
        acts
    }
}

/// Applies actions to a sample as an enforcer would.
pub(crate) fn apply(sample: &mut NodeSample, acts: &[Action], keep_evicted: bool) {
    for a in acts {
        match *a {
            Action::SetOfflineCpuQuota { cores, .. } => sample.node.offline_cpu_quota = Some(cores),
            Action::EvictVm { vm, .. } if !keep_evicted => sample.vms.retain(|v| v.id != vm),
            _ => {
                let Some(v) = a
                    .vm()
                    .and_then(|id| sample.vms.iter_mut().find(|v| v.id == id))
                else {
                    continue;
                };
                match *a {
                    Action::SetVmVcpuQuota { cores, .. } => v.limits.vcpu_quota = cores,
                    Action::SetVcpuSchedIdle { idle, .. } => v.limits.sched_idle = idle,
                    Action::SetVmIoLimit { limit, .. } => v.limits.io = limit,
                    Action::SetVmMemoryLimit { bytes, .. } => v.limits.memory_limit = Some(bytes),
                    Action::PauseVm { .. } => v.state = VmRunState::Paused,
                    Action::ResumeVm { .. } => v.state = VmRunState::Running,
                    _ => {}
                }
            }
        }
    }
}

/// The group quotas set by `acts`.
pub(crate) fn quotas(acts: &[Action]) -> Vec<f64> {
    acts.iter()
        .filter_map(|a| match a {
            Action::SetOfflineCpuQuota { cores, .. } => Some(*cores),
            _ => None,
        })
        .collect()
}
