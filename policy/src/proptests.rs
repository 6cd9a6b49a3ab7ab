//! Property tests over random node histories: actions stay inside the policy's bounds, never
//! touch anything but the sample's own offline VMs, and no knob is loosened sooner after a
//! change than the cool-downs allow.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use colo_config::policy::QosClassName;
use proptest::prelude::*;

use crate::testing::{apply, policy};
use crate::{
    Action, Direction, Engine, NodeSample, OnlineSample, PsiSample, Signal, VmId, VmSample,
};

#[derive(Debug, Clone)]
struct Tick {
    dt_ms: u64,
    online_cpu: f64,
    run_delay: f64,
    psi_cpu: f64,
    psi_mem: f64,
    io_latency_ms: u64,
    sli: Option<f64>,
    memory_used_pct: u64,
    vm_cpu: f64,
    vm_io_mib: u64,
    throttled: f64,
    arrive: Option<(bool, u32, u64, i32)>,
    depart: bool,
}

fn tick() -> impl Strategy<Value = Tick> {
    (
        prop_oneof![Just(50u64), 1u64..2_000],
        0.0f64..16.0,
        prop_oneof![Just(0.0f64), 0.0f64..0.01, 0.0f64..0.5, Just(f64::NAN)],
        prop_oneof![Just(0.0f64), 0.0f64..1.0],
        prop_oneof![Just(0.0f64), 0.0f64..0.2],
        prop_oneof![Just(1u64), 0u64..100],
        proptest::option::of(0.0f64..3.0),
        50u64..100,
        (0.0f64..8.0, 0u64..500, 0.0f64..1.0),
        proptest::option::of((any::<bool>(), 1u32..8, 0u64..8192, -5i32..5)),
        proptest::bool::weighted(0.05),
    )
        .prop_map(
            |(
                dt_ms,
                online_cpu,
                run_delay,
                psi_cpu,
                psi_mem,
                io_latency_ms,
                sli,
                memory_used_pct,
                (vm_cpu, vm_io_mib, throttled),
                arrive,
                depart,
            )| Tick {
                dt_ms,
                online_cpu,
                run_delay,
                psi_cpu,
                psi_mem,
                io_latency_ms,
                sli,
                memory_used_pct,
                vm_cpu,
                vm_io_mib,
                throttled,
                arrive,
                depart,
            },
        )
}

fn policy_text() -> impl Strategy<Value = String> {
    (
        (1u64..90, 1u64..100, 1u64..100, 0u64..400, 1u64..3_000),
        (0u64..3, 1u64..60, 1u64..20, any::<bool>(), proptest::option::of(0u64..40)),
    )
        .prop_map(|((min_q, down, up, squeeze_ms, cool_ms), (after_s, vcpu_down, floor, pause, vcpu_extra))| {
            format!(
                "cpu:\n  suppress:\n    min_offline_quota: {}\n    step_down: {down}%\n    step_up: {up}%\n  vcpu_throttle:\n    step_down: {vcpu_down}%\n    max_step_down: {}\n    min_per_vm: {}\nqos_classes:\n  batch:\n    cpu_floor: {floor}%\n    sched_idle: on_interference\ntiming:\n  squeeze_cooldown: {squeeze_ms}ms\n  release_after: {after_s}s\n  release_cooldown: {cool_ms}ms\n  resume_after: {}ms\n  pause_after: {}\n",
                min_q as f64 / 100.0,
                vcpu_extra.map_or("null".to_string(), |e| format!("{}%", vcpu_down + e)),
                floor as f64 / 200.0,
                cool_ms.max(1),
                if pause { "1s" } else { "null" },
            )
        })
}

#[derive(Default)]
struct KnobLog {
    last_change: Option<(u64, Direction)>,
    last_step: Option<u64>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn actions_respect_bounds_targets_and_cooldowns(
        text in policy_text(),
        capacity in 1u32..32,
        budget_share in 0.1f64..1.0,
        ticks in proptest::collection::vec(tick(), 1..300),
    ) {
        let pol = policy(&text);
        let p = crate::params::Params::new(&pol);
        let mut engine = Engine::new(&pol);
        let mut s = NodeSample::default();
        s.node.cpu_capacity = f64::from(capacity);
        s.node.offline_cpu_budget = f64::from(capacity) * budget_share;
        s.node.memory_total = 64 << 30;
        s.online.push(OnlineSample { service: 0, ..Default::default() });
        let mut out = Vec::new();
        let mut next_id = 1u64;
        let mut evicted: HashSet<VmId> = HashSet::new();
        let mut knobs: HashMap<(u8, u64), KnobLog> = HashMap::new();
        let budget = s.node.offline_cpu_budget;
        let eps = 1e-6;

        for t in &ticks {
            s.now += Duration::from_millis(t.dt_ms);
            let now = u64::try_from(s.now.as_nanos()).unwrap_or(u64::MAX);
            let o = &mut s.online[0];
            o.cpu_usage = t.online_cpu;
            o.run_delay = Some(t.run_delay);
            o.psi = Some(PsiSample { cpu_some: t.psi_cpu, memory_some: t.psi_mem, ..Default::default() });
            o.io_latency = Some(Duration::from_millis(t.io_latency_ms));
            o.sli_ratio = t.sli;
            s.node.memory_used = s.node.memory_total / 100 * t.memory_used_pct;
            if let Some((mid, vcpus, mem_mib, priority)) = t.arrive && s.vms.len() < 12 {
                s.vms.push(VmSample {
                    id: VmId(next_id),
                    class: if mid { QosClassName::Mid } else { QosClassName::Batch },
                    priority,
                    vcpus,
                    guest_memory: (mem_mib + 16) << 20,
                    memory_usage: (mem_mib + 16) << 20,
                    started_at: s.now,
                    ..Default::default()
                });
                next_id += 1;
            }
            if t.depart && !s.vms.is_empty() {
                s.vms.remove(0);
            }
            for vm in &mut s.vms {
                vm.cpu_usage = t.vm_cpu.min(f64::from(vm.vcpus));
                vm.io_bytes_per_sec = t.vm_io_mib << 20;
                vm.io_ops_per_sec = t.vm_io_mib * 10;
                vm.throttled = t.throttled;
            }
            let present: HashMap<VmId, VmSample> = s.vms.iter().map(|v| (v.id, *v)).collect();

            engine.step(&s, &mut out);

            for a in &out {
                let r = a.reason();
                prop_assert!(r.value.is_finite() || r.value.is_nan() || r.signal == Signal::Policy);
                // Only the sample's own, not yet evicted, offline VMs are touched.
                if let Some(id) = a.vm() {
                    prop_assert!(present.contains_key(&id), "{a} names a VM not in the sample");
                    prop_assert!(!evicted.contains(&id), "{a} acts on an evicted VM");
                }
                let knob = match a {
                    Action::SetOfflineCpuQuota { cores, .. } => {
                        let floor = p.min_quota.min(budget);
                        prop_assert!(cores.is_finite() && *cores >= floor - eps && *cores <= budget + eps,
                            "quota {cores} outside [{floor}, {budget}]");
                        Some((0u8, 0u64))
                    }
                    Action::SetVmVcpuQuota { vm, cores, .. } => {
                        let v = present[vm];
                        let vcpus = f64::from(v.vcpus);
                        let floor = p.vcpu_min.max(p.class(v.class).cpu_floor * vcpus).min(vcpus);
                        if let Some(c) = cores {
                            prop_assert!(*c >= floor - eps && *c <= vcpus + eps, "vcpu quota {c} outside [{floor}, {vcpus}]");
                        }
                        Some((1, vm.0))
                    }
                    Action::SetVmIoLimit { vm, limit, .. } => {
                        prop_assert!(limit.bandwidth.is_none_or(|b| b >= p.min_vm_bw.min(p.vm_io.bandwidth.unwrap_or(u64::MAX))));
                        prop_assert!(limit.iops.is_none_or(|o| o >= p.min_vm_iops.min(p.vm_io.iops.unwrap_or(u64::MAX))));
                        Some((2, vm.0))
                    }
                    Action::SetOfflineIoLimit { limit, .. } => {
                        prop_assert!(limit.bandwidth.is_none_or(|b| b >= p.min_group_bw));
                        prop_assert!(limit.iops.is_none_or(|o| o >= p.min_group_iops));
                        Some((3, 0))
                    }
                    Action::SetVmMemoryLimit { vm, bytes, .. } => {
                        prop_assert_eq!(*bytes, present[vm].guest_memory + p.vm_memory_overhead);
                        None
                    }
                    Action::PauseVm { vm, .. } | Action::ResumeVm { vm, .. } => Some((4, vm.0)),
                    Action::SetVcpuSchedIdle { vm, .. } => Some((5, vm.0)),
                    Action::EvictVm { vm, .. } => {
                        evicted.insert(*vm);
                        None
                    }
                };
                let Some(key) = knob else { continue };
                if r.direction == Direction::Set {
                    continue;
                }
                let log = knobs.entry(key).or_default();
                if r.direction == Direction::Release
                    && let Some((at, _)) = log.last_change
                {
                    prop_assert!(now - at >= p.release_cooldown,
                        "{a}: released {} ns after the previous change (cool-down {})", now - at, p.release_cooldown);
                }
                let stepwise = r.direction == Direction::Squeeze
                    && key.0 <= 3
                    && r.signal != Signal::OnlineCpu;
                if stepwise {
                    if let Some(at) = log.last_step {
                        prop_assert!(now - at >= p.squeeze_cooldown, "{a}: squeezed {} ns after the previous step", now - at);
                    }
                    log.last_step = Some(now);
                }
                log.last_change = Some((now, r.direction));
            }
            apply(&mut s, &out, false);
        }
    }
}
