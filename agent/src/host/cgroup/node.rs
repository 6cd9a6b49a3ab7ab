//! One cgroup of the agent's subtree and the knobs the enforcer turns on it, written in the
//! dialect of the node's cgroup version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::counters::{CgroupCpu, CgroupIo, CgroupMemory};
use super::files::{self, read_pids};
use super::values::{CgroupStats, CpuQuota, CpuWeight, IoLimit};
use super::{CgroupError, Layout, TreeInner};

/// The thread groups of a VMM that get their own CPU cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadGroup {
    /// The vCPU threads (`colo-vcpu-N`): `<job>/vcpu`.
    Vcpu,
    /// The IO thread (`colo-io`): `<job>/io`.
    Io,
}

/// Maps a controller name to its v2 name (`blkio` → `io`, `cpuacct` → `cpu`).
pub(crate) fn v2_controller(c: &str) -> &str {
    match c {
        "blkio" => "io",
        "cpuacct" => "cpu",
        other => other,
    }
}

/// One cgroup of the agent's subtree (`<root>/offline`, a job, or a job's thread group).
#[derive(Debug, Clone)]
pub struct CgroupNode {
    tree: Arc<TreeInner>,
    /// Path relative to `<root>`.
    rel: PathBuf,
    /// A thread-level cgroup (v2 threaded; v1 only in the CPU and blkio hierarchies).
    threaded: bool,
}

impl CgroupNode {
    pub(crate) fn new(tree: Arc<TreeInner>, rel: PathBuf, threaded: bool) -> Self {
        Self {
            tree,
            rel,
            threaded,
        }
    }

    pub(crate) fn tree(&self) -> &TreeInner {
        &self.tree
    }

    pub(crate) fn rel(&self) -> &Path {
        &self.rel
    }

    /// Every directory of this cgroup (one per v1 hierarchy it lives in, or the v2 one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.tree.dirs(&self.rel, self.threaded)
    }

    /// The directory holding `controller`'s files for this cgroup, or an error naming the
    /// controller when it is not available here.
    fn dir(&self, controller: &str) -> Result<PathBuf, CgroupError> {
        let unavailable = |path: PathBuf, fix: &str| CgroupError::ControllerUnavailable {
            controller: controller.to_string(),
            path,
            fix: fix.to_string(),
        };
        match &self.tree.layout {
            Layout::V1(_) => {
                let dir = self.tree.dir_for(controller, &self.rel).ok_or_else(|| {
                    unavailable(
                        self.rel.clone(),
                        "mount that v1 hierarchy and list it in cgroup.v1_controllers",
                    )
                })?;
                if self.threaded && !self.dirs().contains(&dir) {
                    return Err(unavailable(
                        dir,
                        "thread-level cgroups exist only in the cpu, cpuacct, blkio and cpuset \
                         hierarchies",
                    ));
                }
                Ok(dir)
            }
            Layout::V2 { .. } => {
                let dir = self.dirs().remove(0);
                let name = v2_controller(controller);
                let enabled = files::read(&dir.join("cgroup.controllers"))?;
                if enabled.split_whitespace().any(|c| c == name) {
                    Ok(dir)
                } else {
                    Err(unavailable(
                        dir,
                        "the parent does not enable it in cgroup.subtree_control (threaded \
                         cgroups carry only cpu and cpuset)",
                    ))
                }
            }
        }
    }

    fn is_v2(&self) -> bool {
        matches!(self.tree.layout, Layout::V2 { .. })
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let dir = self.dir(controller)?;
        Ok(self.tree.scope.write(&dir.join(file), value)?)
    }

    fn read(&self, controller: &str, file: &str) -> Result<String, CgroupError> {
        let dir = self.dir(controller)?;
        Ok(files::read(&dir.join(file))?)
    }

    /// Sets the CFS bandwidth limit (v2 `cpu.max`; v1 `cpu.cfs_period_us` and
    /// `cpu.cfs_quota_us`).
    ///
    /// On v1 the kernel refuses (EINVAL) a child quota above its parent's, and a parent quota
    /// below a child's: lower children first when squeezing the offline group.
    pub fn set_cpu_quota(&self, quota: CpuQuota) -> Result<(), CgroupError> {
        if self.is_v2() {
            return self.write("cpu", "cpu.max", &quota.to_v2());
        }
        // Lift the quota first so that the period change is always accepted.
        self.write("cpu", "cpu.cfs_quota_us", "-1")?;
        self.write("cpu", "cpu.cfs_period_us", &quota.period_us.to_string())?;
        self.write("cpu", "cpu.cfs_quota_us", &quota.v1_quota())
    }

    /// Changes only the quota, keeping the period in force: one write (v1 `cpu.cfs_quota_us`,
    /// v2 `cpu.max`), for the QoS loop's frequent changes once [`set_cpu_quota`] has set the
    /// period. `quota.period_us` must be the period in force.
    ///
    /// [`set_cpu_quota`]: Self::set_cpu_quota
    pub fn set_cpu_quota_only(&self, quota: CpuQuota) -> Result<(), CgroupError> {
        if self.is_v2() {
            return self.write("cpu", "cpu.max", &quota.to_v2());
        }
        self.write("cpu", "cpu.cfs_quota_us", &quota.v1_quota())
    }

    /// The CFS bandwidth limit now in force.
    pub fn cpu_quota(&self) -> Result<CpuQuota, CgroupError> {
        if self.is_v2() {
            let text = self.read("cpu", "cpu.max")?;
            return CpuQuota::parse_v2(&text).ok_or_else(|| {
                CgroupError::Detect(format!("unexpected cpu.max {:?}", text.trim()))
            });
        }
        let period_us = self
            .read("cpu", "cpu.cfs_period_us")?
            .trim()
            .parse()
            .unwrap_or(100_000);
        let quota: i64 = self
            .read("cpu", "cpu.cfs_quota_us")?
            .trim()
            .parse()
            .unwrap_or(-1);
        Ok(CpuQuota {
            quota_us: u64::try_from(quota).ok(),
            period_us,
        })
    }

    /// Sets the relative CPU weight (v2 `cpu.weight`; v1 `cpu.shares`). The kernel refuses
    /// (EINVAL) weight changes while `cpu.idle` is 1.
    pub fn set_cpu_weight(&self, weight: CpuWeight) -> Result<(), CgroupError> {
        if self.is_v2() {
            self.write("cpu", "cpu.weight", &weight.v2().to_string())
        } else {
            self.write("cpu", "cpu.shares", &weight.v1_shares().to_string())
        }
    }

    /// Puts the cgroup's tasks under SCHED_IDLE-like treatment (`cpu.idle`, both versions;
    /// kernel ≥ 5.15).
    pub fn set_cpu_idle(&self, idle: bool) -> Result<(), CgroupError> {
        self.write("cpu", "cpu.idle", if idle { "1" } else { "0" })
    }

    /// Sets the hard memory limit (v2 `memory.max`; v1 `memory.limit_in_bytes`); None lifts it.
    /// v1 refuses (EBUSY) a limit below what is charged and cannot be reclaimed.
    pub fn set_memory_max(&self, bytes: Option<u64>) -> Result<(), CgroupError> {
        match (self.is_v2(), bytes) {
            (true, Some(b)) => self.write("memory", "memory.max", &b.to_string()),
            (true, None) => self.write("memory", "memory.max", "max"),
            (false, Some(b)) => self.write("memory", "memory.limit_in_bytes", &b.to_string()),
            (false, None) => self.write("memory", "memory.limit_in_bytes", "-1"),
        }
    }

    /// Sets the soft memory limit: v2 `memory.high` (reclaim and throttle above it); v1
    /// `memory.soft_limit_in_bytes` (only acts under global memory pressure).
    pub fn set_memory_high(&self, bytes: Option<u64>) -> Result<(), CgroupError> {
        match (self.is_v2(), bytes) {
            (true, Some(b)) => self.write("memory", "memory.high", &b.to_string()),
            (true, None) => self.write("memory", "memory.high", "max"),
            (false, Some(b)) => self.write("memory", "memory.soft_limit_in_bytes", &b.to_string()),
            (false, None) => self.write("memory", "memory.soft_limit_in_bytes", "-1"),
        }
    }

    /// Sets `pids.max`; None lifts it.
    pub fn set_pids_max(&self, max: Option<u64>) -> Result<(), CgroupError> {
        let v = max.map_or_else(|| "max".to_string(), |m| m.to_string());
        self.write("pids", "pids.max", &v)
    }

    /// Sets throughput and IOPS limits on one device (v2 `io.max`; v1 `blkio.throttle.*`).
    /// Zero fields lift that limit. v1 throttling sees direct IO only.
    pub fn set_io_limit(&self, limit: &IoLimit) -> Result<(), CgroupError> {
        if self.is_v2() {
            return self.write("io", "io.max", &limit.to_v2());
        }
        for (file, value) in limit.to_v1() {
            self.write("blkio", file, &value)?;
        }
        Ok(())
    }

    /// Moves threads into this cgroup (v2 `cgroup.threads`; v1 `tasks` of every hierarchy it
    /// lives in).
    pub fn add_threads(&self, tids: &[u32]) -> Result<(), CgroupError> {
        let file = if self.is_v2() {
            "cgroup.threads"
        } else {
            "tasks"
        };
        for dir in self.dirs() {
            for tid in tids {
                self.tree.scope.write(&dir.join(file), &tid.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves a whole process into this cgroup (`cgroup.procs` of every directory).
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            self.tree
                .scope
                .write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes in this cgroup (of its first directory; on v1 every hierarchy holds the same
    /// processes once the VMM is placed).
    pub fn procs(&self) -> Vec<u32> {
        self.dirs()
            .first()
            .and_then(|d| read_pids(&d.join("cgroup.procs")).ok())
            .unwrap_or_default()
    }

    /// Threads in this cgroup.
    pub fn thread_ids(&self) -> Vec<u32> {
        let file = if self.is_v2() {
            "cgroup.threads"
        } else {
            "tasks"
        };
        self.dirs()
            .first()
            .and_then(|d| read_pids(&d.join(file)).ok())
            .unwrap_or_default()
    }

    /// Usage counters, read once through the same readers the QoS loop keeps open
    /// ([`super::counters`]). Counters of controllers not available here read as zero.
    pub fn stats(&self) -> CgroupStats {
        let v2 = self.is_v2();
        let dir = |controller: &str| self.dir(controller).ok();
        let cpu = if v2 {
            dir("cpu").and_then(|d| CgroupCpu::v2(&d).ok())
        } else {
            let cpu = dir("cpu");
            dir("cpuacct")
                .and_then(|a| CgroupCpu::v1(&a, cpu.as_deref()).ok())
                .or_else(|| cpu.and_then(|c| CgroupCpu::v1_throttling(&c).ok()))
        };
        let cpu = cpu.and_then(|mut c| c.read().ok()).unwrap_or_default();
        let memory = dir("memory")
            .and_then(|d| CgroupMemory::open_usage(&d, v2).ok())
            .and_then(|mut m| m.read_usage().ok())
            .unwrap_or(0);
        let io = dir("blkio")
            .and_then(|d| CgroupIo::open(&d, v2).ok())
            .and_then(|mut io| io.read().ok())
            .unwrap_or_default();
        let pids = self
            .read("pids", "pids.current")
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        CgroupStats {
            cpu_usage_ns: cpu.usage_ns,
            cpu_throttled_ns: cpu.throttled_ns,
            cpu_nr_throttled: cpu.nr_throttled,
            memory_bytes: memory,
            io_read_bytes: io.read_bytes,
            io_write_bytes: io.write_bytes,
            pids,
        }
    }
}
