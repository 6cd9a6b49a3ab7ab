//! The collector: one [`Collector::tick`] reads every signal and turns counters into rates over
//! the interval since the previous tick.
//!
//! Cadences: the fast signals (node CPU, offline CPU, PSI, online run delay and CPU, disk
//! counters, SLI) every tick; listings (threads, devices, selectors) and memory every
//! `slow_every`; each VM's counters at most `vm_refresh` old, a few VMs per tick round-robin so
//! the cost is spread evenly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::MonitorError;
use super::node::{CpuTimes, DiskCounters, DiskStats, MemInfo, ProcMeminfo, ProcStat};
use super::psi::{PsiCounters, PsiSource};
use super::readings::{
    CollectorSettings, OnlineReadings, Readings, ServiceSpec, VmReadings, VmSpec, psi_rates,
};
use super::selector;
use super::tasks::OnlineTasks;
use super::vm::{Vm, read_vm, usage_of};
use crate::host::cgroup::counters::{CgroupCpu, CgroupIo, CgroupMemory};

#[derive(Debug)]
struct Service {
    spec: ServiceSpec,
    rels: Vec<PathBuf>,
    tasks: OnlineTasks,
    cpu: Vec<CgroupCpu>,
    prev_cpu_ns: Option<u64>,
    /// Run-queue wait and time slices of the last [`WAKEUP_TICKS`] ticks.
    wakeups: WakeupWindow,
    memory: Vec<CgroupMemory>,
    memory_bytes: u64,
    io: Vec<CgroupIo>,
    /// Indexes into the collector's device list.
    disks: Vec<usize>,
    psi: Option<PsiSource>,
    prev_psi: Option<PsiCounters>,
    warned: bool,
    out: OnlineReadings,
}

/// Ticks the wake-up delay is averaged over: one 50 ms tick holds a few hundred slices of a busy
/// service, and a single hypervisor hiccup of a few ms moves their mean by tens of µs; four
/// ticks (200 ms) smooth that and still react well inside the loop's 100 ms budget once a real
/// contention lasts (the mean crosses `high` as soon as the new slices outweigh the old).
pub const WAKEUP_TICKS: usize = 4;

/// The run-queue wait and slices of the last ticks, summed.
#[derive(Debug, Default)]
struct WakeupWindow {
    ring: [(u64, u64); WAKEUP_TICKS],
    next: usize,
}

impl WakeupWindow {
    /// Adds one tick's deltas and returns the window's mean wait per slice, seconds (`None`
    /// when no slice ran in the window).
    fn push(&mut self, delay_ns: u64, slices: u64) -> Option<f64> {
        self.ring[self.next] = (delay_ns, slices);
        self.next = (self.next + 1) % WAKEUP_TICKS;
        let (d, n) = self
            .ring
            .iter()
            .fold((0u64, 0u64), |(d, n), &(a, b)| (d.saturating_add(a), n + b));
        (n > 0).then(|| d as f64 / n as f64 / 1e9)
    }
}

/// Reads the signals of one node.
#[derive(Debug)]
pub struct Collector {
    s: CollectorSettings,
    start: Instant,
    last: Option<Instant>,
    last_slow: Option<Instant>,
    stat: ProcStat,
    prev_cpu: CpuTimes,
    meminfo: ProcMeminfo,
    mem: MemInfo,
    diskstats: DiskStats,
    devices: Vec<(u32, u32)>,
    disk_prev: Vec<DiskCounters>,
    disk_now: Vec<DiskCounters>,
    system_psi: Option<PsiSource>,
    prev_system_psi: Option<PsiCounters>,
    offline_cpu: Option<CgroupCpu>,
    prev_offline: Option<u64>,
    services: Vec<Service>,
    vms: Vec<Vm>,
    vm_cursor: usize,
    vm_credit: f64,
    out: Readings,
    scratch_devs: Vec<(u32, u32)>,
    /// Device → its whole disk, as found in sysfs (a partition's parent does not change).
    whole_disks: Vec<((u32, u32), (u32, u32))>,
}

impl Collector {
    /// A collector; fails only when `/proc` itself cannot be read. A kernel without PSI is
    /// logged as an error naming `psi=1`, and the loop runs on its other signals.
    pub fn new(settings: CollectorSettings) -> Result<Self, MonitorError> {
        let p = &settings.proc_root;
        let open = |name: &str| {
            let path = p.join(name);
            move |e| MonitorError::read(&path, e)
        };
        let stat = ProcStat::open(&p.join("stat")).map_err(open("stat"))?;
        let meminfo = ProcMeminfo::open(&p.join("meminfo")).map_err(open("meminfo"))?;
        let diskstats = DiskStats::open(&p.join("diskstats")).map_err(open("diskstats"))?;
        let system_psi = if settings.system_psi {
            match PsiSource::system(&p.join("pressure")) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "system-wide PSI unavailable");
                    None
                }
            }
        } else {
            None
        };
        let offline_cpu = usage_of(&settings.hierarchies, &settings.offline);
        let mut c = Self {
            s: settings,
            start: Instant::now(),
            last: None,
            last_slow: None,
            stat,
            prev_cpu: CpuTimes::default(),
            meminfo,
            mem: MemInfo::default(),
            diskstats,
            devices: Vec::new(),
            disk_prev: Vec::new(),
            disk_now: Vec::new(),
            system_psi,
            prev_system_psi: None,
            offline_cpu,
            prev_offline: None,
            services: Vec::new(),
            vms: Vec::new(),
            vm_cursor: 0,
            vm_credit: 0.0,
            out: Readings::default(),
            scratch_devs: Vec::new(),
            whole_disks: Vec::new(),
        };
        c.prev_cpu = c
            .stat
            .read()
            .map_err(|e| MonitorError::read(&c.s.proc_root.join("stat"), e))?;
        Ok(c)
    }

    /// Whether system-wide PSI is read.
    pub fn has_system_psi(&self) -> bool {
        self.system_psi.is_some()
    }

    /// The settings.
    pub fn settings(&self) -> &CollectorSettings {
        &self.s
    }

    /// Sets the online services (resolved at the next slow refresh).
    pub fn set_services(&mut self, specs: Vec<ServiceSpec>) {
        let list = self.s.hierarchies.thread_list();
        self.services = specs
            .into_iter()
            .map(|spec| Service {
                out: OnlineReadings {
                    service: spec.index,
                    ..Default::default()
                },
                spec,
                rels: Vec::new(),
                tasks: OnlineTasks::new(Vec::new(), list),
                cpu: Vec::new(),
                prev_cpu_ns: None,
                wakeups: WakeupWindow::default(),
                memory: Vec::new(),
                memory_bytes: 0,
                io: Vec::new(),
                disks: Vec::new(),
                psi: None,
                prev_psi: None,
                warned: false,
            })
            .collect();
        self.last_slow = None;
    }

    /// Sets the VMs to watch, in the order their readings are wanted. Known VMs keep their
    /// counters; new ones are opened (their first rates come one refresh later).
    pub fn set_vms(&mut self, specs: &[VmSpec]) {
        let mut old = std::mem::take(&mut self.vms);
        for spec in specs {
            match old.iter().position(|v| v.spec == *spec) {
                Some(i) => self.vms.push(old.swap_remove(i)),
                None => self.vms.push(Vm {
                    spec: spec.clone(),
                    cpu: None,
                    vcpu: None,
                    memory: None,
                    io: None,
                    prev: None,
                    out: VmReadings {
                        key: spec.key,
                        ..Default::default()
                    },
                }),
            }
        }
        if self.vm_cursor >= self.vms.len() {
            self.vm_cursor = 0;
        }
    }

    /// Reads every signal at `now` and returns the readings (rates over the interval since the
    /// previous tick; the first tick only sets baselines and reports zero rates).
    pub fn tick(&mut self, now: Instant) -> &Readings {
        let dt = self
            .last
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        self.last = Some(now);
        let slow = self
            .last_slow
            .is_none_or(|l| now.saturating_duration_since(l) >= self.s.slow_every);
        if slow {
            self.last_slow = Some(now);
            self.refresh(now);
        }
        self.out.node.now = now.saturating_duration_since(self.start);
        self.out.node.interval_s = dt;
        self.node(dt);
        self.online(dt, now);
        self.vms(dt, now);
        &self.out
    }

    fn rate(delta_ns: u64, dt: f64) -> f64 {
        if dt > 0.0 {
            delta_ns as f64 / 1e9 / dt
        } else {
            0.0
        }
    }

    fn node(&mut self, dt: f64) {
        let n = &mut self.out.node;
        if let Ok(t) = self.stat.read() {
            n.cpu_capacity = f64::from(t.cpus.max(1));
            n.cpu_busy = Self::rate(t.busy_ns.saturating_sub(self.prev_cpu.busy_ns), dt);
            n.cpu_steal = Self::rate(t.steal_ns.saturating_sub(self.prev_cpu.steal_ns), dt);
            self.prev_cpu = t;
        }
        if let Some(c) = self.offline_cpu.as_mut()
            && let Ok(v) = c.read()
        {
            n.offline_cpu = self
                .prev_offline
                .map_or(0.0, |p| Self::rate(v.usage_ns.saturating_sub(p), dt));
            self.prev_offline = Some(v.usage_ns);
        }
        n.memory_total = self.mem.total;
        n.memory_used = self.mem.total.saturating_sub(self.mem.available);
        n.psi = None;
        if let Some(src) = self.system_psi.as_mut()
            && let Ok(v) = src.read()
        {
            if let Some(p) = self.prev_system_psi
                && dt > 0.0
            {
                n.psi = Some(psi_rates(&p, &v, dt * 1e6));
            }
            self.prev_system_psi = Some(v);
        }
        if !self.devices.is_empty() {
            std::mem::swap(&mut self.disk_prev, &mut self.disk_now);
            if self
                .diskstats
                .read(&self.devices, &mut self.disk_now)
                .is_err()
            {
                self.disk_now.copy_from_slice(&self.disk_prev);
            }
        }
    }

    fn online(&mut self, dt: f64, now: Instant) {
        self.out.online.clear();
        for svc in &mut self.services {
            let o = &mut svc.out;
            let d = svc.tasks.read();
            o.tasks = d.tasks;
            o.run_delay = (d.tasks > 0 && dt > 0.0).then(|| Self::rate(d.run_delay_ns, dt));
            o.wakeup_delay = svc.wakeups.push(d.run_delay_ns, d.slices);
            let mut used = 0u64;
            let mut any = false;
            for c in &mut svc.cpu {
                if let Ok(v) = c.read() {
                    used += v.usage_ns;
                    any = true;
                }
            }
            if any {
                o.cpu = svc
                    .prev_cpu_ns
                    .map_or(0.0, |p| Self::rate(used.saturating_sub(p), dt));
                svc.prev_cpu_ns = Some(used);
            }
            o.psi = None;
            if let Some(src) = svc.psi.as_mut()
                && let Ok(v) = src.read()
            {
                if let Some(p) = svc.prev_psi
                    && dt > 0.0
                {
                    o.psi = Some(psi_rates(&p, &v, dt * 1e6));
                }
                svc.prev_psi = Some(v);
            }
            o.memory = svc.memory_bytes;
            o.io_latency = None;
            o.io_utilisation = None;
            for &i in &svc.disks {
                let (Some(a), Some(b)) = (self.disk_prev.get(i), self.disk_now.get(i)) else {
                    continue;
                };
                let ios = b.ios.saturating_sub(a.ios);
                if ios > 0 {
                    let ms = b.io_ms.saturating_sub(a.io_ms) as f64 / ios as f64;
                    let lat = Duration::from_secs_f64(ms / 1e3);
                    o.io_latency = Some(o.io_latency.map_or(lat, |l| l.max(lat)));
                }
                if dt > 0.0 {
                    let util = (b.busy_ms.saturating_sub(a.busy_ms) as f64 / 1e3 / dt).min(1.0);
                    o.io_utilisation = Some(o.io_utilisation.map_or(util, |u| u.max(util)));
                }
            }
            o.sli_ratio = svc.spec.sli.as_ref().and_then(|(target, window)| {
                let p99 = window
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .p99(now, self.s.sli_min_samples)?;
                Some(p99.as_secs_f64() / target.as_secs_f64().max(1e-9))
            });
            self.out.online.push(*o);
        }
    }

    fn vms(&mut self, dt: f64, now: Instant) {
        let n = self.vms.len();
        if n > 0 {
            // Refresh enough VMs this tick that each is read once per `vm_refresh`.
            self.vm_credit += n as f64 * dt / self.s.vm_refresh.as_secs_f64().max(1e-3);
            if self.vms.iter().any(|v| v.prev.is_none()) {
                self.vm_credit = self.vm_credit.max(1.0);
            }
            let mut budget = (self.vm_credit.floor() as usize).min(n);
            self.vm_credit -= budget as f64;
            // New VMs first: their baselines start the clock on their rates.
            for v in self.vms.iter_mut().filter(|v| v.prev.is_none()) {
                if budget == 0 {
                    break;
                }
                read_vm(&self.s, v, now);
                budget -= 1;
            }
            while budget > 0 {
                let i = self.vm_cursor % n;
                self.vm_cursor = (i + 1) % n;
                read_vm(&self.s, &mut self.vms[i], now);
                budget -= 1;
            }
        }
        self.out.vms.clear();
        self.out.vms.extend(self.vms.iter().map(|v| v.out));
    }

    /// Slow refresh: memory, selectors, thread lists, devices.
    fn refresh(&mut self, _now: Instant) {
        if let Ok(m) = self.meminfo.read() {
            self.mem = m;
        }
        if self.offline_cpu.is_none() {
            self.offline_cpu = usage_of(&self.s.hierarchies, &self.s.offline);
        }
        let h = &self.s.hierarchies;
        let v2 = h.is_v2();
        let mut devices_changed = false;
        for svc in &mut self.services {
            match selector::resolve(h, &svc.spec.selector) {
                Ok(rels) => {
                    svc.warned = false;
                    if rels != svc.rels || svc.cpu.is_empty() {
                        svc.cpu = rels.iter().filter_map(|r| usage_of(h, r)).collect();
                        svc.memory = rels
                            .iter()
                            .filter_map(|r| CgroupMemory::open(&h.dir("memory", r)?, v2).ok())
                            .collect();
                        svc.io = rels
                            .iter()
                            .filter_map(|r| CgroupIo::open(&h.dir("blkio", r)?, v2).ok())
                            .collect();
                        svc.psi = if self.s.cgroup_psi && v2 {
                            rels.first().and_then(|r| h.dir("cpu", r)).and_then(|d| match PsiSource::cgroup(&d) {
                                Ok(p) => Some(p),
                                Err(e) => {
                                    tracing::warn!(service = %svc.spec.name, error = %e, "no cgroup PSI");
                                    None
                                }
                            })
                        } else {
                            None
                        };
                        svc.prev_psi = None;
                        svc.prev_cpu_ns = None;
                        let dirs = rels
                            .iter()
                            .filter_map(|r| h.dir(if v2 { "cpu" } else { "cpuacct" }, r))
                            .collect();
                        svc.tasks = OnlineTasks::new(dirs, h.thread_list());
                        svc.rels = rels;
                    }
                }
                Err(e) => {
                    if !svc.warned {
                        tracing::warn!(service = %svc.spec.name, error = %e, "online service not found; its signals are absent until it is");
                        svc.warned = true;
                    }
                    svc.rels.clear();
                    svc.cpu.clear();
                    svc.memory.clear();
                    svc.io.clear();
                    svc.psi = None;
                    svc.tasks = OnlineTasks::new(Vec::new(), h.thread_list());
                }
            }
            svc.tasks.refresh();
            svc.memory_bytes = svc
                .memory
                .iter_mut()
                .filter_map(|m| m.read().ok())
                .map(|m| m.working_set)
                .sum();
            // The disks it uses: those its cgroup did IO on, else the default disk.
            self.scratch_devs.clear();
            for io in &mut svc.io {
                let _ = io.devices(&mut self.scratch_devs);
            }
            if self.scratch_devs.is_empty()
                && let Some(d) = self.s.default_disk
            {
                self.scratch_devs.push(d);
            }
            let mut idx = Vec::with_capacity(self.scratch_devs.len());
            for &d in &self.scratch_devs {
                let d = match self.whole_disks.iter().find(|(p, _)| *p == d) {
                    Some(&(_, w)) => w,
                    None => {
                        let w = super::node::whole_disk(d);
                        self.whole_disks.push((d, w));
                        w
                    }
                };
                let i = match self.devices.iter().position(|x| *x == d) {
                    Some(i) => i,
                    None => {
                        self.devices.push(d);
                        devices_changed = true;
                        self.devices.len() - 1
                    }
                };
                if !idx.contains(&i) {
                    idx.push(i);
                }
            }
            if idx != svc.disks {
                svc.disks = idx;
            }
        }
        if devices_changed {
            self.disk_now
                .resize(self.devices.len(), DiskCounters::default());
            if self
                .diskstats
                .read(&self.devices, &mut self.disk_now)
                .is_ok()
            {
                self.disk_prev.clone_from(&self.disk_now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
