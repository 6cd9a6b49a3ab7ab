//! The seam between a job's supervisor and the sandbox its workload runs in. The supervisor
//! launches, recognises, queries, pauses and stops a job's process only through [`Sandbox`];
//! the cgroups, the registry, the budget and the outcome rules are the same for every kind.
//!
//! Two kinds today: a MicroVM (`colo-vmm`, [`microvm`]) for the workload and Linux guests, and
//! an OCI container ([`container`], under its per-job monitor). A new kind is a new variant of
//! [`Sandbox`] with its own module here, and a match arm in each method.

pub mod container;
pub mod linux;
pub mod microvm;
mod offers;
pub(crate) mod program;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub use container::Container;
pub use microvm::MicroVm;
pub use offers::{Offer, offers};

use super::config::ManagerConfig;
use super::launch::{self, WaitStatus};
use super::model::{Guest, JobSpec, StopIntent};
use super::outcome::{self, Outcome};
use super::paths::{PathRoots, open_job_files};
use super::registry::JobPaths;
use crate::host::cgroup::{JobCgroup, JobShape};

/// Errors of talking to a running sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The VMM's control socket failed.
    #[error(transparent)]
    MicroVm(#[from] microvm::ControlClientError),
    /// The container runtime failed.
    #[error(transparent)]
    Container(#[from] container::ContainerError),
}

/// A sandbox process ready to launch: its program and arguments, and the descriptors it
/// inherits (fd 3, 4, ...).
#[derive(Debug)]
pub struct Prepared {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Inherited descriptors.
    pub inherit: Vec<OwnedFd>,
}

/// The threads a sandbox announced once it runs (its `started` line), to be placed in the
/// job's thread cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedLine {
    /// The sandbox's process.
    pub pid: u32,
    /// vCPU thread ids, by vCPU index.
    pub vcpu_tids: Vec<u32>,
    /// The IO thread, if any.
    pub io_tid: Option<u32>,
}

/// What a running sandbox says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxStatus {
    /// Its workload is paused.
    pub paused: bool,
    /// The workload's progress counter.
    pub progress: u64,
}

/// Locates one of colo's own binaries (`colo-vmm`, `colo-monitor`): `configured` if set, else
/// `name` next to the running executable (or in its parent directory, for test binaries), else
/// on `PATH` or in the usual sbin and bin directories.
pub fn find_binary(name: &str, configured: Option<&std::path::Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return Some(p.to_path_buf());
    }
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        for cand in [dir.join(name), dir.join("..").join(name)] {
            if cand.is_file() {
                return Some(cand);
            }
        }
    }
    colo_oci::runtime::find_on_path(&[name])
}

/// The sandbox a job runs in.
#[derive(Debug, Clone)]
pub enum Sandbox {
    /// colo's MicroVM (`colo-vmm`).
    MicroVm(MicroVm),
    /// An OCI container under its monitor.
    Container(Container),
}

impl Sandbox {
    /// The sandbox for `spec` on this agent.
    pub fn for_job(spec: &JobSpec, cfg: &ManagerConfig) -> Self {
        match spec.guest {
            Guest::Container(_) => Self::Container(Container::new(
                cfg.containers.clone(),
                cfg.log_limit,
                cfg.start_timeout,
            )),
            Guest::Workload(_) | Guest::Linux(_) => Self::MicroVm(MicroVm::for_job(cfg, spec)),
        }
    }

    /// The shape of the job's cgroup for this sandbox.
    pub fn cgroup_shape(&self) -> JobShape {
        match self {
            Self::Container(_) => JobShape::Container,
            Self::MicroVm(_) => JobShape::Vmm,
        }
    }

    /// Opens what the job names beneath `roots` and builds the sandbox process's launch
    /// (blocking: it may read and write files).
    pub fn prepare(
        &self,
        id: &str,
        spec: &JobSpec,
        paths: &JobPaths,
        roots: &PathRoots,
        cgroup: &JobCgroup,
    ) -> Result<Prepared, String> {
        match (self, &spec.guest) {
            (Self::Container(c), Guest::Container(p)) => {
                container::prepare(c, id, p, paths, roots, cgroup)
            }
            (Self::MicroVm(vm), _) if linux::program(spec).is_some() => {
                let host = vm
                    .linux
                    .as_ref()
                    .map_err(|why| format!("this node cannot run Linux-guest programs: {why}"))?;
                let (vm_spec, inherit, extra) = linux::prepare(host, id, spec, paths, roots)?;
                let (program, mut args) = vm.command(&vm_spec, paths);
                args.extend(extra);
                Ok(Prepared {
                    program,
                    args,
                    inherit,
                })
            }
            (Self::MicroVm(vm), _) => {
                // The files the job names are opened here, beneath the operator's roots, and
                // handed to the VMM as descriptors: it never resolves a client's path itself.
                let (spec, inherit) = open_job_files(spec, roots, launch::FIRST_INHERITED_FD)
                    .map_err(|e| format!("cannot open its files: {e}"))?;
                let (program, args) = vm.command(&spec, paths);
                Ok(Prepared {
                    program,
                    args,
                    inherit,
                })
            }
            (Self::Container(_), _) => Err("a container sandbox for a MicroVM guest".into()),
        }
    }

    /// The `started` announcement in the sandbox's output, once it is there.
    pub fn started(&self, output: &str) -> Option<StartedLine> {
        match self {
            Self::MicroVm(_) => microvm::parse_started(output),
            // The container's processes are born in its cgroup: no threads to place.
            Self::Container(_) => {
                container::monitor::parse_started(output).map(|(pid, _)| StartedLine {
                    pid,
                    vcpu_tids: Vec::new(),
                    io_tid: None,
                })
            }
        }
    }

    /// The name prefix of the sandbox's vCPU threads.
    pub fn vcpu_thread_prefix(&self) -> &'static str {
        match self {
            Self::MicroVm(_) | Self::Container(_) => microvm::VCPU_THREAD,
        }
    }

    /// The outcome the sandbox process recorded when it ended, if it left a record.
    pub fn recorded_outcome(
        &self,
        paths: &JobPaths,
        intent: Option<&StopIntent>,
    ) -> Option<Outcome> {
        match self {
            Self::MicroVm(vm) if vm.guest.is_some() => {
                let r = microvm::ExitRecord::read(&paths.exit_record).ok()?;
                Some(linux::exit::decide(&paths.guest, Some(&r), None, intent))
            }
            Self::MicroVm(_) => microvm::ExitRecord::read(&paths.exit_record)
                .ok()
                .map(|r| outcome::decide(Some(&r), None, intent)),
            Self::Container(_) => container::ContainerExit::read(&paths.exit_record)
                .ok()
                .map(|r| container::decide(Some(&r), None, intent)),
        }
    }

    /// How the job ended, once its sandbox process has: from its record (if any), the wait
    /// status (when the agent is its parent) and the stop the agent asked for.
    pub fn decide(
        &self,
        paths: &JobPaths,
        wait: Option<WaitStatus>,
        intent: Option<&StopIntent>,
    ) -> Outcome {
        match self {
            Self::MicroVm(vm) => {
                let r = microvm::ExitRecord::read(&paths.exit_record).ok();
                if vm.guest.is_some() {
                    linux::exit::decide(&paths.guest, r.as_ref(), wait, intent)
                } else {
                    outcome::decide(r.as_ref(), wait, intent)
                }
            }
            Self::Container(_) => {
                let r = container::ContainerExit::read(&paths.exit_record).ok();
                container::decide(r.as_ref(), wait, intent)
            }
        }
    }

    /// Whether a process named `comm` found in a job's cgroup is this sandbox's process (to
    /// re-adopt it when its pid was never recorded).
    pub fn is_own_process(&self, comm: &str) -> bool {
        match self {
            Self::MicroVm(vm) => vm.is_own_process(comm),
            Self::Container(c) => c.is_own_process(comm),
        }
    }

    /// The sandbox's state and progress.
    pub async fn status(&self, id: &str, paths: &JobPaths) -> Result<SandboxStatus, SandboxError> {
        match self {
            Self::MicroVm(vm) => Ok(vm.status(paths).await?),
            Self::Container(c) => Ok(c.status(id).await?),
        }
    }

    /// Pauses (`pause`) or resumes the workload.
    pub async fn set_paused(
        &self,
        id: &str,
        paths: &JobPaths,
        pause: bool,
    ) -> Result<(), SandboxError> {
        match self {
            Self::MicroVm(vm) => Ok(vm.set_paused(paths, pause).await?),
            Self::Container(c) => Ok(c.set_paused(id, pause).await?),
        }
    }

    /// Asks the workload to shut down (the supervisor kills it after the grace).
    pub async fn shutdown(&self, id: &str, paths: &JobPaths) -> Result<(), SandboxError> {
        match self {
            Self::MicroVm(vm) => Ok(vm.shutdown(paths).await?),
            Self::Container(c) => Ok(c.signal(id, paths, libc::SIGTERM).await?),
        }
    }

    /// Kills the workload: the VMM process, or the container's init (its monitor stays to
    /// record the end). Falls back to killing the sandbox process itself.
    pub async fn kill(&self, id: &str, paths: &JobPaths, process: Option<&OwnedFd>) {
        let direct = match self {
            Self::MicroVm(_) => None,
            Self::Container(c) => Some(c.signal(id, paths, libc::SIGKILL).await),
        };
        if matches!(direct, Some(Ok(()))) {
            return;
        }
        if let Some(fd) = process
            && let Err(e) = launch::pidfd_signal(fd, libc::SIGKILL)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            tracing::error!(job = %id, error = %e, "cannot kill the sandbox process");
        }
    }

    /// Starts what follows a running sandbox beside its process (a Linux guest's link to its
    /// in-guest agent): once it runs, and again when a new agent re-adopts it.
    pub fn attach(&self, id: &str, paths: &JobPaths) {
        if let Self::MicroVm(vm) = self {
            vm.attach(id, paths);
        }
    }

    /// Stops what [`Self::attach`] started (the job has ended).
    pub fn detach(&self) {
        if let Self::MicroVm(MicroVm { guest: Some(g), .. }) = self {
            g.stop();
        }
    }

    /// Removes what the sandbox leaves beyond the job's cgroups and files.
    pub fn cleanup(&self, id: &str, paths: &JobPaths) {
        match self {
            Self::MicroVm(_) => {
                // A Linux guest's root and volume images made for this job alone.
                for e in std::fs::read_dir(&paths.guest)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if e.path().extension().is_some_and(|x| x == "ext4") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            Self::Container(c) => c.cleanup(id, paths),
        }
    }
}
