//! The agent's own thin cgroup layer, for cgroup v1 and v2.
//!
//! Layout (relative to each hierarchy's mount on v1, to the unified mount on v2):
//!
//! ```text
//! <root>/                 the agent's subtree (v2: its delegated cgroup)
//! <root>/agent            the agent itself, when it moves itself (always on v2)
//! <root>/offline          every offline job; the offline group's CPU quota and IO limit
//! <root>/offline/<job>    one VMM process: memory, IO and pids limits
//! <root>/offline/<job>/vcpu   the vCPU threads (v2: threaded; v1: cpu, cpuacct, blkio)
//! <root>/offline/<job>/io     the IO thread     (v2: threaded; v1: cpu, cpuacct, blkio)
//! ```
//!
//! Every write goes through a [`files::Scope`] that refuses paths outside `<root>`. The
//! hierarchies are detected once ([`Hierarchies`]); the writers ([`CgroupNode`]) and the
//! kept-fd readers of the QoS loop ([`counters`]) both work from them.

pub mod counters;
pub mod detect;
pub mod files;
mod job;
mod node;
pub mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use colo_config::agent::CgroupVersion;
pub use detect::{Hierarchies, V1Hierarchy};
pub use files::CgroupFileError;
pub use job::{JobCgroup, JobLimits, JobShape, Placement};
pub use node::{CgroupNode, ThreadGroup};
pub use values::{CgroupStats, CpuQuota, CpuWeight, DeviceNumber, IoLimit};

use files::Scope;

/// Errors of the cgroup layer.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The hierarchies could not be found or understood.
    #[error("cgroup detection: {0}")]
    Detect(String),
    /// A controller the agent needs is not available where it needs it.
    #[error("cgroup controller `{controller}` is not available in {path}; {fix}")]
    ControllerUnavailable {
        /// The controller (`memory`, `cpu`, ...).
        controller: String,
        /// The cgroup directory.
        path: PathBuf,
        /// How to make it available.
        fix: String,
    },
    /// The agent's subtree root is the root of the hierarchy, which it must never manage.
    #[error(
        "the agent's cgroup subtree would be the root of the hierarchy; run colo-agent under \
         systemd with Delegate=yes, or set cgroup.root in agent.yaml"
    )]
    RootOfHierarchy,
    /// The job's cgroup already exists.
    #[error("cgroup of job {0} already exists")]
    JobExists(String),
    /// A cgroup file operation failed.
    #[error(transparent)]
    File(#[from] CgroupFileError),
}

/// How the agent finds and sets up its subtree (the `cgroup:` section of agent.yaml).
#[derive(Debug, Clone)]
pub struct CgroupSettings {
    /// The version to drive; [`CgroupVersion::Auto`] detects it.
    pub version: CgroupVersion,
    /// The unified (v2) mount point; v1 hierarchies are found in `/proc/self/mountinfo`.
    pub mount: PathBuf,
    /// The agent's subtree, relative to each hierarchy's root. `None`: on v2 the agent's own
    /// cgroup (delegated by systemd), on v1 `colo`.
    pub root: Option<PathBuf>,
    /// Move the agent into `<root>/agent` before creating children. `None`: yes on v2 (required
    /// there: a cgroup with controllers enabled for its children may hold no processes), no on
    /// v1.
    pub move_self: Option<bool>,
    /// v1 hierarchies to use (controller names).
    pub v1_controllers: Vec<String>,
    /// Controllers that must be available (start fails otherwise).
    pub required_controllers: Vec<String>,
}

impl Default for CgroupSettings {
    fn default() -> Self {
        Self {
            version: CgroupVersion::Auto,
            mount: PathBuf::from("/sys/fs/cgroup"),
            root: None,
            move_self: None,
            v1_controllers: ["memory", "pids", "cpu", "cpuacct", "blkio"]
                .map(String::from)
                .to_vec(),
            required_controllers: ["memory", "pids", "cpu"].map(String::from).to_vec(),
        }
    }
}

/// The v2 controllers the agent enables for its children, in the kernel's order.
pub(crate) const V2_CONTROLLERS: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];
/// The v2 controllers that work in threaded cgroups (enabled for `<job>/vcpu` and `<job>/io`).
pub(crate) const V2_THREADED: &[&str] = &["cpuset", "cpu"];
/// The v1 controllers whose hierarchies get `<job>/vcpu` and `<job>/io`.
const V1_THREAD_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "blkio", "cpuset"];

#[derive(Debug)]
pub(crate) enum Layout {
    V1(Vec<V1Hierarchy>),
    V2 { mount: PathBuf },
}

#[derive(Debug)]
pub(crate) struct TreeInner {
    /// Every hierarchy of the node, as detected.
    pub(crate) hierarchies: Hierarchies,
    /// The ones the agent writes (v1: those of `cgroup.v1_controllers`).
    pub(crate) layout: Layout,
    /// `<root>` relative to each hierarchy.
    pub(crate) root: PathBuf,
    pub(crate) scope: Scope,
}

impl TreeInner {
    pub(crate) fn version(&self) -> CgroupVersion {
        match self.layout {
            Layout::V1(_) => CgroupVersion::V1,
            Layout::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// The directories of `rel` (relative to `<root>`): one per v1 hierarchy (only those for
    /// thread-level cgroups when `threads`), or the one v2 directory.
    pub(crate) fn dirs(&self, rel: &Path, threads: bool) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1(h) => h
                .iter()
                .filter(|h| {
                    !threads
                        || h.controllers
                            .iter()
                            .any(|c| V1_THREAD_CONTROLLERS.contains(&c.as_str()))
                })
                .map(|h| h.mount.join(&self.root).join(rel))
                .collect(),
            Layout::V2 { mount } => vec![mount.join(&self.root).join(rel)],
        }
    }

    /// The directory of `rel` in the hierarchy carrying `controller` (v2: the one directory).
    pub(crate) fn dir_for(&self, controller: &str, rel: &Path) -> Option<PathBuf> {
        match &self.layout {
            Layout::V1(h) => h
                .iter()
                .find(|h| h.controllers.iter().any(|c| c == controller))
                .map(|h| h.mount.join(&self.root).join(rel)),
            Layout::V2 { mount } => Some(mount.join(&self.root).join(rel)),
        }
    }

    /// Creates `rel` in every hierarchy it belongs to; on v1 a cpuset cgroup gets its parent's
    /// CPUs and memory nodes (it cannot hold tasks otherwise).
    fn mkdir(&self, rel: &Path, threads: bool) -> Result<(), CgroupError> {
        for dir in self.dirs(rel, threads) {
            self.scope.mkdir(&dir)?;
            if matches!(self.layout, Layout::V1(_)) && dir.join("cpuset.cpus").exists() {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let own = files::read(&dir.join(f))?;
                    if own.trim().is_empty()
                        && let Some(parent) = dir.parent()
                    {
                        let inherited = files::read(&parent.join(f))?;
                        self.scope.write(&dir.join(f), inherited.trim())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The agent's cgroup subtree. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CgroupTree {
    inner: Arc<TreeInner>,
}

impl CgroupTree {
    /// Finds the hierarchies, sets up `<root>`, `<root>/offline` (and on v2 moves the agent into
    /// `<root>/agent` and enables the controllers for the children).
    pub fn open(settings: &CgroupSettings) -> Result<Self, CgroupError> {
        let hierarchies = Hierarchies::detect(settings.version, &settings.mount)?;
        Self::open_on(hierarchies, settings)
    }

    /// [`open`](Self::open) on hierarchies already detected (`settings.version` and
    /// `settings.mount` were used for that).
    pub fn open_on(
        hierarchies: Hierarchies,
        settings: &CgroupSettings,
    ) -> Result<Self, CgroupError> {
        let version = hierarchies.version();
        let layout = match &hierarchies {
            Hierarchies::V1 { controllers, .. } => {
                let used: Vec<V1Hierarchy> = controllers
                    .iter()
                    .filter(|h| {
                        h.controllers
                            .iter()
                            .any(|c| settings.v1_controllers.contains(c))
                    })
                    .cloned()
                    .collect();
                for c in &settings.required_controllers {
                    if !used.iter().any(|h| h.controllers.contains(c)) {
                        return Err(CgroupError::ControllerUnavailable {
                            controller: c.clone(),
                            path: settings.mount.join(c),
                            fix: "mount the v1 hierarchy and list it in cgroup.v1_controllers"
                                .into(),
                        });
                    }
                }
                Layout::V1(used)
            }
            Hierarchies::V2 { mount } => Layout::V2 {
                mount: mount.clone(),
            },
        };
        let root = match &settings.root {
            Some(r) => r.clone(),
            None if version == CgroupVersion::V2 => detect::own_v2_cgroup()?,
            None => PathBuf::from("colo"),
        };
        let root = PathBuf::from(root.to_string_lossy().trim_matches('/'));
        if root.as_os_str().is_empty() {
            return Err(CgroupError::RootOfHierarchy);
        }
        let roots = match &layout {
            Layout::V1(h) => h.iter().map(|h| h.mount.join(&root)).collect(),
            Layout::V2 { mount } => vec![mount.join(&root)],
        };
        let inner = TreeInner {
            hierarchies,
            layout,
            root,
            scope: Scope::new(roots),
        };
        inner.mkdir(Path::new(""), false)?;
        let move_self = settings.move_self.unwrap_or(version == CgroupVersion::V2);
        if move_self {
            inner.mkdir(Path::new("agent"), false)?;
            for dir in inner.dirs(Path::new("agent"), false) {
                // Writing 0 moves the writing process itself.
                inner.scope.write(&dir.join("cgroup.procs"), "0")?;
            }
        }
        if let Layout::V2 { .. } = inner.layout {
            let rootdir = inner.dirs(Path::new(""), false).remove(0);
            enable_v2(
                &inner.scope,
                &rootdir,
                V2_CONTROLLERS,
                &settings.required_controllers,
            )?;
            inner.mkdir(Path::new("offline"), false)?;
            let offline = rootdir.join("offline");
            enable_v2(
                &inner.scope,
                &offline,
                V2_CONTROLLERS,
                &settings.required_controllers,
            )?;
        } else {
            inner.mkdir(Path::new("offline"), false)?;
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The cgroup version in use.
    pub fn version(&self) -> CgroupVersion {
        self.inner.version()
    }

    /// The node's hierarchies, as detected when the tree was opened.
    pub fn hierarchies(&self) -> &Hierarchies {
        &self.inner.hierarchies
    }

    /// `<root>` relative to the hierarchy roots.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directories of `<root>/offline` (one per v1 hierarchy, or the v2 one).
    pub fn offline_dirs(&self) -> Vec<PathBuf> {
        self.inner.dirs(Path::new("offline"), false)
    }

    /// The offline group `<root>/offline`: its CPU quota and IO limit bound every job at once.
    pub fn offline(&self) -> CgroupNode {
        CgroupNode::new(self.inner.clone(), PathBuf::from("offline"), false)
    }

    /// Hands a v2 subtree with no job left back as its owner made it: removes `<root>/offline`
    /// and disables the controllers `<root>` enabled for its children, so that systemd can
    /// start the next agent's processes in the unit's cgroup (before `DelegateSubgroup=`,
    /// systemd 254, it starts them there, and a cgroup that enables controllers for its
    /// children takes no process: the restart fails with `status=219/CGROUP`). Does nothing on
    /// v1, while a job's cgroup exists, or while `<root>` has children other than the agent's.
    pub fn release_if_idle(&self) -> Result<bool, CgroupError> {
        let Layout::V2 { .. } = self.inner.layout else {
            return Ok(false);
        };
        if !self.job_ids().is_empty() {
            return Ok(false);
        }
        let rootdir = self.inner.dirs(Path::new(""), false).remove(0);
        let others = std::fs::read_dir(&rootdir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .any(|e| e.file_name() != "agent" && e.file_name() != "offline")
            })
            .unwrap_or(true);
        if others {
            return Ok(false);
        }
        self.inner
            .scope
            .remove_tree(&rootdir.join("offline"), Duration::from_millis(200))?;
        let enabled = files::read(&rootdir.join("cgroup.subtree_control"))?;
        let off: Vec<String> = enabled
            .split_whitespace()
            .map(|c| format!("-{c}"))
            .collect();
        if !off.is_empty() {
            self.inner
                .scope
                .write(&rootdir.join("cgroup.subtree_control"), &off.join(" "))?;
        }
        Ok(true)
    }

    /// Ids of the jobs that have a cgroup under `<root>/offline`.
    pub fn job_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for dir in self.offline_dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && let Some(name) = e.file_name().to_str()
                    && !ids.iter().any(|i| i == name)
                {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        ids
    }

    /// Creates `<root>/offline/<id>` with its `vcpu` and `io` children, shaped for what will run
    /// there, and applies `limits`. On failure nothing is left behind.
    pub fn create_job(
        &self,
        id: &str,
        shape: JobShape,
        limits: &JobLimits,
    ) -> Result<JobCgroup, CgroupError> {
        let job = self.shaped_handle(id, shape);
        if job.exists() {
            return Err(CgroupError::JobExists(id.into()));
        }
        match job.create(limits) {
            Ok(()) => Ok(job),
            Err(e) => {
                if let Err(cleanup) = job.remove(Duration::from_millis(200)) {
                    tracing::warn!(job = id, error = %cleanup, "cleaning up a half-made job cgroup");
                }
                Err(e)
            }
        }
    }

    /// A handle on an existing job cgroup (after an agent restart), or None.
    pub fn open_job(&self, id: &str) -> Option<JobCgroup> {
        let job = self.job_handle(id);
        job.exists().then_some(job)
    }

    /// A handle on `<root>/offline/<id>` whether or not it exists (for cleanup); its shape is
    /// read from the directories (a `monitor` child: a container on v2).
    pub fn job_handle(&self, id: &str) -> JobCgroup {
        let probe = self.shaped_handle(id, JobShape::Container);
        let container = probe.monitor.dirs().iter().any(|d| d.is_dir());
        if container {
            probe
        } else {
            self.shaped_handle(id, JobShape::Vmm)
        }
    }

    fn shaped_handle(&self, id: &str, shape: JobShape) -> JobCgroup {
        let rel = Path::new("offline").join(id);
        JobCgroup {
            id: id.to_string(),
            shape,
            job: CgroupNode::new(self.inner.clone(), rel.clone(), false),
            vcpu: CgroupNode::new(self.inner.clone(), rel.join("vcpu"), true),
            io: CgroupNode::new(self.inner.clone(), rel.join("io"), true),
            monitor: CgroupNode::new(self.inner.clone(), rel.join("monitor"), false),
        }
    }
}

/// Enables `wanted ∩ available` in `dir/cgroup.subtree_control`; fails when one of `required`
/// is not available.
pub(crate) fn enable_v2(
    scope: &Scope,
    dir: &Path,
    wanted: &[&str],
    required: &[String],
) -> Result<Vec<String>, CgroupError> {
    let available = files::read(&dir.join("cgroup.controllers"))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    for r in required {
        let r = node::v2_controller(r);
        if !available.contains(&r) {
            return Err(CgroupError::ControllerUnavailable {
                controller: r.to_string(),
                path: dir.into(),
                fix: "delegate it (systemd: Delegate=yes in the unit; otherwise enable it in \
                      every ancestor's cgroup.subtree_control)"
                    .into(),
            });
        }
    }
    let enable: Vec<String> = wanted
        .iter()
        .filter(|c| available.contains(c))
        .map(|c| c.to_string())
        .collect();
    if !enable.is_empty() {
        let line = enable
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        scope.write(&dir.join("cgroup.subtree_control"), &line)?;
    }
    Ok(enable)
}

#[cfg(test)]
mod real_v2_tests;
#[cfg(test)]
pub(crate) mod tests;
