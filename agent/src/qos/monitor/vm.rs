//! One offline VM's cgroup counters, opened lazily (the cgroup may not exist yet) and turned into
//! rates; and how the collector opens a cgroup's CPU readers.

use std::path::Path;
use std::time::Instant;

use super::readings::{CollectorSettings, VmReadings, VmSpec};
use crate::host::cgroup::Hierarchies;
use crate::host::cgroup::counters::{CgroupCpu, CgroupIo, CgroupMemory, CpuCounters, IoCounters};

#[derive(Debug)]
pub(super) struct Vm {
    pub(super) spec: VmSpec,
    pub(super) cpu: Option<CgroupCpu>,
    pub(super) vcpu: Option<CgroupCpu>,
    pub(super) memory: Option<CgroupMemory>,
    pub(super) io: Option<CgroupIo>,
    pub(super) prev: Option<(Instant, CpuCounters, CpuCounters, IoCounters)>,
    pub(super) out: VmReadings,
}

/// A VM's `vcpu` child, read for its throttling only (its usage is in the VM's own cgroup).
pub(super) fn throttling_of(h: &Hierarchies, rel: &Path) -> Option<CgroupCpu> {
    if h.is_v2() {
        CgroupCpu::v2(&h.dir("cpu", rel)?).ok()
    } else {
        CgroupCpu::v1_throttling(&h.dir("cpu", rel)?).ok()
    }
}

pub(super) fn cpu_of(h: &Hierarchies, rel: &Path) -> Option<CgroupCpu> {
    if h.is_v2() {
        CgroupCpu::v2(&h.dir("cpu", rel)?).ok()
    } else {
        let cpu = h.dir("cpu", rel);
        CgroupCpu::v1(&h.dir("cpuacct", rel)?, cpu.as_deref()).ok()
    }
}

/// A cgroup read for its CPU usage only (the online services, the offline group): on v1
/// `cpuacct.usage` alone, without the cpu hierarchy's `cpu.stat` (throttling nobody reads).
pub(super) fn usage_of(h: &Hierarchies, rel: &Path) -> Option<CgroupCpu> {
    if h.is_v2() {
        CgroupCpu::v2(&h.dir("cpu", rel)?).ok()
    } else {
        CgroupCpu::v1(&h.dir("cpuacct", rel)?, None).ok()
    }
}

pub(super) fn read_vm(s: &CollectorSettings, v: &mut Vm, now: Instant) {
    let h = &s.hierarchies;
    if v.cpu.is_none() {
        let rel = s.offline.join(&v.spec.job);
        v.cpu = cpu_of(h, &rel);
        v.vcpu = throttling_of(h, &rel.join("vcpu"));
        v.memory = h
            .dir("memory", &rel)
            .and_then(|d| CgroupMemory::open(&d, h.is_v2()).ok());
        v.io = h
            .dir("blkio", &rel)
            .and_then(|d| CgroupIo::open(&d, h.is_v2()).ok());
    }
    let Some(cpu) = v.cpu.as_mut().and_then(|c| c.read().ok()) else {
        // Not created yet, or gone: try opening again next time.
        v.cpu = None;
        v.out.seen = false;
        return;
    };
    let vcpu = v
        .vcpu
        .as_mut()
        .and_then(|c| c.read().ok())
        .unwrap_or_default();
    let io =
        v.io.as_mut()
            .and_then(|c| c.read().ok())
            .unwrap_or_default();
    if let Some(m) = v.memory.as_mut().and_then(|m| m.read_usage().ok()) {
        v.out.memory = m;
    }
    if let Some((t, pc, pv, pio)) = v.prev {
        let dt = now.saturating_duration_since(t).as_secs_f64();
        if dt > 0.0 {
            v.out.cpu = cpu.usage_ns.saturating_sub(pc.usage_ns) as f64 / 1e9 / dt;
            let thr = vcpu
                .throttled_ns
                .saturating_sub(pv.throttled_ns)
                .max(cpu.throttled_ns.saturating_sub(pc.throttled_ns));
            v.out.throttled = (thr as f64 / 1e9 / dt).min(1.0);
            let per_s = |x: u64| (x as f64 / dt) as u64;
            v.out.io_bytes_per_sec = per_s(
                (io.read_bytes + io.write_bytes).saturating_sub(pio.read_bytes + pio.write_bytes),
            );
            v.out.io_ops_per_sec = per_s(io.ios.saturating_sub(pio.ios));
        }
    }
    v.out.seen = true;
    v.prev = Some((now, cpu, vcpu, io));
}
