//! One job's cgroups: `<root>/offline/<job>` with its `vcpu` and `io` children (and, for a
//! container on cgroup v2, a `monitor` child), the limits it is born with, where its sandbox
//! process is placed, and its removal (a container's in every hierarchy of the node).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{self, CgroupFileError};
use super::node::{CgroupNode, ThreadGroup};
use super::values::{CgroupStats, IoLimit};
use super::{CgroupError, Layout, V2_CONTROLLERS, V2_THREADED, detect, enable_v2};

/// Limits a job's cgroup carries from its creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobLimits {
    /// Memory limit in bytes (guest memory plus the VMM's own overhead).
    pub memory_bytes: Option<u64>,
    /// Maximum number of tasks (threads).
    pub pids: Option<u64>,
    /// IO limits on block devices.
    pub io: Vec<IoLimit>,
}

/// What runs in a job's cgroup, which decides the shape of its subtree on cgroup v2 (on v1 both
/// shapes are the same directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobShape {
    /// A VMM: one process in `<job>`, its vCPU and IO threads moved into the `vcpu` and `io`
    /// children (threaded cgroups on v2).
    Vmm,
    /// A container: its monitor process and the container's processes. On v2 a cgroup that
    /// enables controllers for its children holds no process, and an OCI runtime places whole
    /// processes: `<job>` enables the domain controllers, the monitor lives in `<job>/monitor`
    /// and the container in `<job>/vcpu`, both domain cgroups. On v1 the monitor lives in
    /// `<job>` and the container in `<job>/vcpu`.
    Container,
}

/// One job's cgroups: `<root>/offline/<job>` and its `vcpu` and `io` children.
#[derive(Debug, Clone)]
pub struct JobCgroup {
    pub(super) id: String,
    pub(super) shape: JobShape,
    pub(super) job: CgroupNode,
    pub(super) vcpu: CgroupNode,
    pub(super) io: CgroupNode,
    /// `<job>/monitor`: where a container's monitor lives on v2 (unused otherwise).
    pub(super) monitor: CgroupNode,
}

/// Where a new VMM process must be born: the cgroup directories it enters before `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// v1: the `cgroup.procs` file of the job in every hierarchy; the child writes `0` into
    /// each between `fork` and `exec`.
    V1 {
        /// The `cgroup.procs` files.
        procs_files: Vec<PathBuf>,
    },
    /// v2: the job directory, opened and passed to `clone3(CLONE_INTO_CGROUP)`.
    V2 {
        /// The job's cgroup directory.
        dir: PathBuf,
    },
}

impl JobCgroup {
    /// The job id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `<root>/offline/<job>`: memory, IO and pids limits; the VMM process lives here.
    pub fn job(&self) -> &CgroupNode {
        &self.job
    }

    /// Whether a container's monitor lives in its own `monitor` child (cgroup v2).
    fn has_monitor_child(&self) -> bool {
        self.shape == JobShape::Container && matches!(self.job.tree().layout, Layout::V2 { .. })
    }

    /// The cgroup the sandbox's own process (the VMM, or a container's monitor) is born in.
    pub fn home(&self) -> &CgroupNode {
        if self.has_monitor_child() {
            &self.monitor
        } else {
            &self.job
        }
    }

    /// The CPU cgroup of a thread group (`vcpu` or `io`).
    pub fn threads(&self, group: ThreadGroup) -> &CgroupNode {
        match group {
            ThreadGroup::Vcpu => &self.vcpu,
            ThreadGroup::Io => &self.io,
        }
    }

    pub(super) fn exists(&self) -> bool {
        self.job.dirs().iter().any(|d| d.exists())
    }

    pub(super) fn create(&self, limits: &JobLimits) -> Result<(), CgroupError> {
        let inner = self.job.tree();
        inner.mkdir(self.job.rel(), false)?;
        for child in [&self.vcpu, &self.io] {
            inner.mkdir(child.rel(), true)?;
        }
        if self.has_monitor_child() {
            inner.mkdir(self.monitor.rel(), false)?;
            // Domain children: the container's cgroup gets every controller the job has.
            enable_v2(&inner.scope, &self.job.dirs()[0], V2_CONTROLLERS, &[])?;
        } else if let Layout::V2 { .. } = inner.layout {
            for child in [&self.vcpu, &self.io] {
                for dir in child.dirs() {
                    inner.scope.write(&dir.join("cgroup.type"), "threaded")?;
                }
            }
            let jobdir = &self.job.dirs()[0];
            // Only threaded controllers may be enabled below a thread root; enable those the
            // parent gave this job.
            enable_v2(&inner.scope, jobdir, V2_THREADED, &[])?;
        }
        if limits.memory_bytes.is_some() {
            self.job.set_memory_max(limits.memory_bytes)?;
        }
        if limits.pids.is_some() {
            self.job.set_pids_max(limits.pids)?;
        }
        for l in &limits.io {
            self.job.set_io_limit(l)?;
        }
        Ok(())
    }

    /// Where the VMM process (or a container's monitor) must be placed at birth.
    pub fn placement(&self) -> Placement {
        let dirs = self.home().dirs();
        match self.job.tree().layout {
            Layout::V1(_) => Placement::V1 {
                procs_files: dirs.iter().map(|d| d.join("cgroup.procs")).collect(),
            },
            Layout::V2 { .. } => Placement::V2 {
                dir: dirs[0].clone(),
            },
        }
    }

    /// Moves the given threads (of the job's VMM) into the `vcpu` or `io` child.
    pub fn place_threads(&self, group: ThreadGroup, tids: &[u32]) -> Result<(), CgroupError> {
        self.threads(group).add_threads(tids)
    }

    /// Processes in the job's cgroup where the sandbox's process lives (and, for a container on
    /// v2, in the container's cgroup beside it).
    pub fn procs(&self) -> Vec<u32> {
        let mut procs = self.home().procs();
        if self.has_monitor_child() {
            for p in self.vcpu.procs() {
                if !procs.contains(&p) {
                    procs.push(p);
                }
            }
        }
        procs
    }

    /// The first of the job's cgroup directories (one per hierarchy on v1) that no longer holds
    /// process `pid`: removed, or the process moved out of it behind the agent's back. `None`
    /// while every limit still applies to it.
    pub fn lost(&self, pid: u32) -> Option<PathBuf> {
        self.home()
            .dirs()
            .into_iter()
            .find(|d| files::read_pids(&d.join("cgroup.procs")).map_or(true, |p| !p.contains(&pid)))
    }

    /// Usage of the job: CPU and memory of the whole VMM, IO of its block devices, throttled
    /// time summed over the job and its `vcpu` and `io` children.
    pub fn stats(&self) -> CgroupStats {
        let mut s = self.job.stats();
        for child in [&self.vcpu, &self.io] {
            let c = child.stats();
            s.cpu_throttled_ns += c.cpu_throttled_ns;
            s.cpu_nr_throttled += c.cpu_nr_throttled;
        }
        s
    }

    /// The cgroup of a thread group as an OCI runtime's `cgroupsPath` names it: absolute from the
    /// root of each hierarchy (`/colo/offline/<job>/vcpu`). A container's processes live there.
    pub fn runtime_path(&self, group: ThreadGroup) -> String {
        let rel = self.job.tree().root.join(self.threads(group).rel());
        format!("/{}", rel.display())
    }

    /// The file whose `oom_kill N` line counts the OOM kills of the job's container: v1 counts a
    /// kill only in the victim's own memory cgroup, so `<job>/vcpu/memory.oom_control` (the
    /// container's cgroup, made by its runtime); v2 counts a subtree's kills in
    /// `<job>/memory.events`. `None` without the memory controller.
    pub fn oom_counter(&self) -> Option<PathBuf> {
        let inner = self.job.tree();
        Some(match inner.layout {
            Layout::V1(_) => inner
                .dir_for("memory", self.vcpu.rel())?
                .join("memory.oom_control"),
            Layout::V2 { .. } => inner
                .dir_for("memory", self.job.rel())?
                .join("memory.events"),
        })
    }

    /// Removes the job's cgroups in every hierarchy of the node, also those the agent does not
    /// manage (an OCI runtime makes a container's cgroup in each it knows, and leaves the
    /// parents it made behind). Only empty cgroups are removed there (`rmdir`, deepest first);
    /// nothing is written.
    pub fn remove_everywhere(&self, patience: Duration) -> Result<(), CgroupError> {
        self.remove(patience)?;
        let rel = self.job.tree().root.join(self.job.rel());
        for mount in detect::every_cgroup_mount() {
            rmdir_tree(&mount.join(&rel))?;
        }
        Ok(())
    }

    /// Removes the job's cgroups (children first). Fails with [`CgroupFileError::Busy`] when
    /// processes are still inside after `patience`; it never kills them.
    pub fn remove(&self, patience: Duration) -> Result<(), CgroupError> {
        let inner = self.job.tree();
        for dir in self.job.dirs() {
            inner.scope.remove_tree(&dir, patience)?;
        }
        Ok(())
    }
}

/// Removes the empty cgroup `dir` and its empty children, deepest first.
fn rmdir_tree(dir: &Path) -> Result<(), CgroupError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::File(CgroupFileError::Io {
            op: "rmdir",
            path: dir.into(),
            value: String::new(),
            source,
        })),
    }
}
