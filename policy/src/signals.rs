//! Reading the interference signals of a sample into per-resource pressure levels.

use colo_config::policy::PsiScope;

use crate::action::Signal;
use crate::params::{Band, Params};
use crate::resource::Resource;
use crate::sample::{NodeSample, PsiSample};

/// One signal's reading against its thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub signal: Signal,
    pub value: f64,
    pub band: Band,
    pub service: Option<u32>,
}

/// The pressure on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Level {
    /// Some reading is above its `high` threshold.
    pub high: bool,
    /// Every reading is below its `low` threshold (no readings: calm; `NaN`: not calm).
    pub all_low: bool,
}

impl Default for Level {
    fn default() -> Self {
        Self {
            high: false,
            all_low: true,
        }
    }
}

/// The pressure on each resource in one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Assessment {
    /// CPU: run delay, PSI cpu, SLI.
    pub cpu: Level,
    /// IO: PSI io, IO latency and utilisation, SLI.
    pub io: Level,
    /// Memory: PSI memory.
    pub memory: Level,
}

impl Assessment {
    fn level(&mut self, r: Resource) -> &mut Level {
        match r {
            Resource::Cpu => &mut self.cpu,
            Resource::Io => &mut self.io,
            Resource::Memory => &mut self.memory,
        }
    }
}

/// Calls `f` with every configured signal's reading in `s`, tagged with its resource.
#[inline]
fn readings(p: &Params, s: &NodeSample, mut f: impl FnMut(Resource, Reading)) {
    let mut one =
        |r: Resource, signal: Signal, value: f64, band: Option<Band>, service: Option<u32>| {
            if let Some(band) = band {
                f(
                    r,
                    Reading {
                        signal,
                        value,
                        band,
                        service,
                    },
                );
            }
        };
    // Without per-cgroup PSI (cgroup v1, or no online service) `auto` reads no PSI at all: the
    // system-wide figures count every task's stalls — the VMs' own (two busy vCPUs on two CPUs
    // stall each other), a build's reclaim — and would squeeze and evict busy VMs with no online
    // service suffering. Node memory in use (`memory.evict_at`) still protects the node. `system`
    // reads the system-wide files, as the operator asked.
    let system_scope = matches!(p.psi_scope, PsiScope::System);
    let cpu_attributable = cpu_attributable(p, s);
    for o in &s.online {
        let svc = Some(o.service);
        if let Some(v) = o.run_delay
            && cpu_attributable
        {
            one(Resource::Cpu, Signal::RunDelay, v, p.run_delay, svc);
        }
        if let Some(v) = o.wakeup_delay
            && cpu_attributable
        {
            one(Resource::Cpu, Signal::WakeupDelay, v, p.wakeup_delay, svc);
        }
        if let Some(v) = o.sli_ratio {
            one(Resource::Cpu, Signal::Sli, v, p.sli, svc);
            one(Resource::Io, Signal::Sli, v, p.sli, svc);
        }
        if let Some(v) = o.io_latency {
            one(
                Resource::Io,
                Signal::IoLatency,
                v.as_secs_f64(),
                p.io_latency,
                svc,
            );
        }
        if let Some(v) = o.io_utilisation {
            one(
                Resource::Io,
                Signal::IoUtilisation,
                v,
                p.io_utilisation,
                svc,
            );
        }
        if let (PsiScope::Cgroup | PsiScope::Auto, Some(ps)) = (p.psi_scope, &o.psi) {
            psi_readings(&mut one, p, ps, svc, cpu_attributable);
        }
    }
    if system_scope && let Some(ps) = &s.node.psi {
        psi_readings(&mut one, p, ps, None, cpu_attributable);
    }
}

/// Whether CPU signals can be blamed on the offline side: the node's CPUs were nearly all busy
/// (idle below `interference.cpu_idle_gate`). With CPUs idle, online tasks that waited were not
/// waiting for a CPU held by offline work. An unknown node usage (0) counts as busy.
#[inline]
fn cpu_attributable(p: &Params, s: &NodeSample) -> bool {
    let cap = s.node.cpu_capacity;
    match p.cpu_idle_gate {
        Some(gate) if cap > 0.0 && s.node.cpu_usage > 0.0 => cap - s.node.cpu_usage < gate * cap,
        _ => true,
    }
}

#[inline]
fn psi_readings<F: FnMut(Resource, Signal, f64, Option<Band>, Option<u32>)>(
    one: &mut F,
    p: &Params,
    ps: &PsiSample,
    svc: Option<u32>,
    cpu_attributable: bool,
) {
    if cpu_attributable {
        one(
            Resource::Cpu,
            Signal::PsiCpuSome,
            ps.cpu_some,
            p.psi_cpu_some,
            svc,
        );
    }
    one(
        Resource::Memory,
        Signal::PsiMemorySome,
        ps.memory_some,
        p.psi_memory_some,
        svc,
    );
    one(
        Resource::Memory,
        Signal::PsiMemoryFull,
        ps.memory_full,
        p.psi_memory_full,
        svc,
    );
    one(
        Resource::Io,
        Signal::PsiIoSome,
        ps.io_some,
        p.psi_io_some,
        svc,
    );
    one(
        Resource::Io,
        Signal::PsiIoFull,
        ps.io_full,
        p.psi_io_full,
        svc,
    );
}

/// Reads every configured signal of `s` into levels (no reasons: those are found on demand).
pub(crate) fn assess(p: &Params, s: &NodeSample) -> Assessment {
    let mut a = Assessment::default();
    readings(p, s, |r, x| {
        let l = a.level(r);
        // NaN compares false both ways: neither high nor calm.
        l.high |= x.value > x.band.high;
        l.all_low &= x.value < x.band.low;
    });
    a
}

/// `a/b > c/d` for positive denominators, without dividing (a zero threshold ranks first).
fn ratio_above(a: f64, b: f64, c: f64, d: f64) -> bool {
    a * d > c * b
}

/// The worst reading of `r` above its `high` threshold (by value ÷ high): a squeeze reason.
pub(crate) fn worst_high(p: &Params, s: &NodeSample, r: Resource) -> Option<Reading> {
    let mut best: Option<Reading> = None;
    readings(p, s, |res, x| {
        if res == r
            && x.value > x.band.high
            && best.is_none_or(|b| ratio_above(x.value, x.band.high, b.value, b.band.high))
        {
            best = Some(x);
        }
    });
    best
}

/// The reading of `r` nearest to (or most above) its `low` threshold: a release reason.
pub(crate) fn nearest_low(p: &Params, s: &NodeSample, r: Resource) -> Option<Reading> {
    let mut best: Option<Reading> = None;
    readings(p, s, |res, x| {
        if res == r
            && !x.value.is_nan()
            && best.is_none_or(|b| ratio_above(x.value, x.band.low, b.value, b.band.low))
        {
            best = Some(x);
        }
    });
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::OnlineSample;

    fn params() -> Params {
        Params::new(&colo_config::Policy::default())
    }

    #[test]
    fn the_worst_signal_above_high_is_named() {
        let p = params();
        let mut s = NodeSample::default();
        s.online.push(OnlineSample {
            service: 0,
            run_delay: Some(0.025),
            ..Default::default()
        });
        s.online.push(OnlineSample {
            service: 1,
            run_delay: Some(0.060),
            ..Default::default()
        });
        let a = assess(&p, &s);
        let h = worst_high(&p, &s, Resource::Cpu).unwrap();
        assert_eq!((h.signal, h.service), (Signal::RunDelay, Some(1)));
        assert!(a.cpu.high && !a.cpu.all_low);
        assert!(a.io.all_low && !a.io.high);
        assert_eq!(
            nearest_low(&p, &s, Resource::Cpu).map(|r| r.service),
            Some(Some(1))
        );
    }

    #[test]
    fn cpu_signals_count_only_while_the_cpus_are_nearly_all_busy() {
        let mut gated = colo_config::Policy::default();
        gated.interference.cpu_idle_gate = colo_config::units::Percent::new(20.0);
        let p = Params::new(&gated);
        let mut s = NodeSample::default();
        s.node.cpu_capacity = 2.0;
        s.node.psi = Some(PsiSample {
            cpu_some: 0.5,
            ..Default::default()
        });
        s.online.push(OnlineSample {
            run_delay: Some(0.200),
            sli_ratio: Some(1.5),
            ..Default::default()
        });
        // 0.9 of 2 cores idle (45 % > the 20 % gate): run delay and CPU PSI are not offline's
        // doing; the SLI still speaks.
        s.node.cpu_usage = 1.1;
        let h = worst_high(&p, &s, Resource::Cpu).unwrap();
        assert_eq!(h.signal, Signal::Sli);
        s.online[0].sli_ratio = None;
        let a = assess(&p, &s);
        assert!(!a.cpu.high && a.cpu.all_low, "{a:?}");
        // 0.2 of 2 cores idle (10 %): they count.
        s.node.cpu_usage = 1.8;
        assert_eq!(
            worst_high(&p, &s, Resource::Cpu).map(|r| r.signal),
            Some(Signal::RunDelay)
        );
        // No gate (the default): they always count.
        let ungated = params();
        s.node.cpu_usage = 0.5;
        assert!(assess(&ungated, &s).cpu.high);
        // Unknown node usage counts as busy.
        s.node.cpu_usage = 0.0;
        assert!(assess(&p, &s).cpu.high);
    }

    #[test]
    fn wakeup_delay_is_read_against_its_own_band_and_not_the_summed_run_delay() {
        let mut pol = colo_config::Policy::default();
        pol.interference.run_delay = None;
        pol.interference.wakeup_delay = Some(colo_config::policy::Threshold {
            high: colo_config::units::DurationValue(std::time::Duration::from_micros(100)),
            low: colo_config::units::DurationValue(std::time::Duration::from_micros(50)),
        });
        let p = Params::new(&pol);
        let mut s = NodeSample::default();
        // A busy service: 150 ms/s of run delay summed over 10,000 wake-ups of 15 us each is
        // no contention, and with `run_delay` off it is not read at all.
        s.online.push(OnlineSample {
            run_delay: Some(0.150),
            wakeup_delay: Some(15e-6),
            ..Default::default()
        });
        let a = assess(&p, &s);
        assert!(!a.cpu.high && a.cpu.all_low, "{a:?}");
        s.online[0].wakeup_delay = Some(70e-6);
        let a = assess(&p, &s);
        assert!(!a.cpu.high && !a.cpu.all_low, "{a:?}");
        s.online[0].wakeup_delay = Some(2e-3);
        let h = worst_high(&p, &s, Resource::Cpu).unwrap();
        assert_eq!((h.signal, h.value), (Signal::WakeupDelay, 2e-3));
        // Not read unless configured (the default).
        assert!(params().wakeup_delay.is_none());
    }

    #[test]
    fn between_the_thresholds_is_neither_high_nor_low() {
        let p = params();
        let mut s = NodeSample::default();
        s.online.push(OnlineSample {
            run_delay: Some(0.010),
            ..Default::default()
        });
        let a = assess(&p, &s);
        assert!(!a.cpu.high && !a.cpu.all_low);
    }

    #[test]
    fn sli_counts_for_cpu_and_io_and_nan_is_not_calm() {
        let p = params();
        let mut s = NodeSample::default();
        s.online.push(OnlineSample {
            sli_ratio: Some(1.5),
            io_latency: None,
            ..Default::default()
        });
        assert_eq!(
            worst_high(&p, &s, Resource::Cpu).map(|r| r.signal),
            Some(Signal::Sli)
        );
        assert_eq!(
            worst_high(&p, &s, Resource::Io).map(|r| r.signal),
            Some(Signal::Sli)
        );
        s.online[0].sli_ratio = Some(f64::NAN);
        let a = assess(&p, &s);
        assert!(!a.cpu.high && !a.cpu.all_low);
    }

    /// System-wide PSI also counts the VMs' own stalls and any other task's: under `auto` it
    /// never squeezes or evicts on a node without per-cgroup PSI (v1) or without online
    /// services; `system` opts in.
    #[test]
    fn auto_scope_ignores_system_psi() {
        let busy_vms = PsiSample {
            cpu_some: 0.9,
            io_some: 0.9,
            io_full: 0.9,
            memory_some: 0.9,
            memory_full: 0.9,
        };
        let p = params();
        for online in [vec![], vec![OnlineSample::default()]] {
            let mut s = NodeSample::default();
            s.node.psi = Some(busy_vms);
            s.online = online;
            let a = assess(&p, &s);
            assert!(!a.cpu.high && a.cpu.all_low, "{a:?}");
            assert!(!a.io.high && a.io.all_low, "{a:?}");
            assert!(!a.memory.high && a.memory.all_low, "{a:?}");
            assert_eq!(worst_high(&p, &s, Resource::Cpu), None);
        }
        let mut p = params();
        p.psi_scope = PsiScope::System;
        let mut s = NodeSample::default();
        s.node.psi = Some(busy_vms);
        let a = assess(&p, &s);
        assert!(a.cpu.high && a.io.high && a.memory.high, "{a:?}");
        // Per-cgroup PSI (v2) still counts for every resource under `auto`.
        let p = params();
        s.online.push(OnlineSample {
            psi: Some(busy_vms),
            ..Default::default()
        });
        let a = assess(&p, &s);
        assert!(a.cpu.high && a.io.high && a.memory.high, "{a:?}");
    }
}
