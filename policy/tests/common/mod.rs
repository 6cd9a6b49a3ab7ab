//! A scenario shared by the allocation test and the step benchmark: a node with online services
//! and offline VMs whose signals move through calm, interference and release.

#![allow(dead_code)]

use std::time::Duration;

use colo_config::policy::QosClassName;
use colo_policy::{Action, NodeSample, OnlineSample, PsiSample, VmId, VmRunState, VmSample};

/// A node with `services` online services and `vms` VMs.
pub fn node(services: u32, vms: u64) -> NodeSample {
    let mut s = NodeSample::default();
    s.node.cpu_capacity = 16.0;
    s.node.offline_cpu_budget = 12.0;
    s.node.memory_total = 64 << 30;
    s.node.memory_used = 40 << 30;
    s.node.psi = Some(PsiSample::default());
    for i in 0..services {
        s.online.push(OnlineSample {
            service: i,
            cpu_usage: 2.0,
            run_delay: Some(0.001),
            wakeup_delay: Some(10e-6),
            psi: Some(PsiSample::default()),
            memory_usage: 4 << 30,
            io_latency: Some(Duration::from_millis(1)),
            io_utilisation: Some(0.2),
            sli_ratio: Some(0.5),
        });
    }
    for i in 0..vms {
        s.vms.push(VmSample {
            id: VmId(i + 1),
            class: if i % 4 == 0 {
                QosClassName::Mid
            } else {
                QosClassName::Batch
            },
            priority: (i % 3) as i32,
            vcpus: 2,
            guest_memory: 1 << 30,
            memory_usage: 1 << 30,
            cpu_usage: 1.5,
            throttled: 0.1,
            io_bytes_per_sec: 20 << 20,
            io_ops_per_sec: 400,
            ..Default::default()
        });
    }
    s
}

/// Moves the sample to step `i` (period `period`): interference comes and goes every ~40 s so
/// every rule runs, and node memory crosses the eviction threshold now and then.
pub fn advance(s: &mut NodeSample, i: u64, period: Duration) {
    s.now += period;
    let phase = (s.now.as_secs() / 40) % 4;
    let (run_delay, io_ms, psi) = match phase {
        0 => (0.001, 1, 0.0),
        1 => (0.08, 30, 0.15),
        2 => (0.012, 8, 0.03),
        _ => (0.0005, 1, 0.0),
    };
    for (k, o) in s.online.iter_mut().enumerate() {
        let wobble = ((i + k as u64) % 7) as f64 * 1e-4;
        o.run_delay = Some(run_delay + wobble);
        o.cpu_usage = 2.0 + ((i + k as u64) % 5) as f64 * 0.3;
        o.io_latency = Some(Duration::from_millis(io_ms));
        if let Some(p) = &mut o.psi {
            p.cpu_some = psi;
            p.io_some = psi / 2.0;
        }
    }
    s.node.memory_used = if i % 5_000 < 3 { 62 << 30 } else { 40 << 30 };
}

/// Applies the actions as an enforcer would; an evicted VM is replaced by a new one so the node
/// keeps its size.
pub fn apply(s: &mut NodeSample, acts: &[Action], next_id: &mut u64) {
    for a in acts {
        let Some(id) = a.vm() else {
            if let Action::SetOfflineCpuQuota { cores, .. } = a {
                s.node.offline_cpu_quota = Some(*cores);
            }
            continue;
        };
        let Some(v) = s.vms.iter_mut().find(|v| v.id == id) else {
            continue;
        };
        match *a {
            Action::SetVmVcpuQuota { cores, .. } => v.limits.vcpu_quota = cores,
            Action::SetVcpuSchedIdle { idle, .. } => v.limits.sched_idle = idle,
            Action::SetVmIoLimit { limit, .. } => v.limits.io = limit,
            Action::SetVmMemoryLimit { bytes, .. } => v.limits.memory_limit = Some(bytes),
            Action::PauseVm { .. } => v.state = VmRunState::Paused,
            Action::ResumeVm { .. } => v.state = VmRunState::Running,
            Action::EvictVm { .. } => {
                // Reuse the slot: a new job arrives where the old one was.
                *v = VmSample {
                    id: VmId(*next_id),
                    limits: Default::default(),
                    state: VmRunState::Running,
                    started_at: s.now,
                    ..*v
                };
                *next_id += 1;
            }
            _ => {}
        }
    }
}
