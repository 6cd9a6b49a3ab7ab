//! The seam between a job's supervisor and the sandbox its workload runs in. The supervisor
//! launches, recognises, queries, pauses and stops a job's process only through [`Sandbox`];
//! the cgroups, the registry, the budget and the outcome rules are the same for every kind.
//!
//! A MicroVM (`colo-vmm`, [`microvm`]) is the only kind today. A container or a Linux guest
//! is a new variant of [`Sandbox`] with its own file here, and a match arm in each method.

pub mod microvm;

use std::ffi::OsString;
use std::path::PathBuf;

pub use microvm::MicroVm;

use super::config::ManagerConfig;
use super::model::JobSpec;
use super::registry::JobPaths;

/// Errors of talking to a running sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The VMM's control socket failed.
    #[error(transparent)]
    MicroVm(#[from] microvm::ControlClientError),
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

/// The sandbox a job runs in.
#[derive(Debug, Clone)]
pub enum Sandbox {
    /// colo's MicroVM (`colo-vmm`).
    MicroVm(MicroVm),
}

impl Sandbox {
    /// The sandbox for `spec` on this agent (every job runs in a MicroVM today).
    pub fn for_job(_spec: &JobSpec, cfg: &ManagerConfig) -> Self {
        Self::MicroVm(MicroVm::new(cfg))
    }

    /// The program and arguments that start the job's sandbox process.
    pub fn command(&self, spec: &JobSpec, paths: &JobPaths) -> (PathBuf, Vec<OsString>) {
        match self {
            Self::MicroVm(vm) => vm.command(spec, paths),
        }
    }

    /// The `started` announcement in the sandbox's output, once it is there.
    pub fn started(&self, output: &str) -> Option<StartedLine> {
        match self {
            Self::MicroVm(_) => microvm::parse_started(output),
        }
    }

    /// The name prefix of the sandbox's vCPU threads.
    pub fn vcpu_thread_prefix(&self) -> &'static str {
        match self {
            Self::MicroVm(_) => microvm::VCPU_THREAD,
        }
    }

    /// The exit record the sandbox process left when it ended, if it left one.
    pub fn exit_record(&self, paths: &JobPaths) -> Option<microvm::ExitRecord> {
        match self {
            Self::MicroVm(_) => microvm::ExitRecord::read(&paths.exit_record).ok(),
        }
    }

    /// Whether a process named `comm` found in a job's cgroup is this sandbox's process (to
    /// re-adopt it when its pid was never recorded).
    pub fn is_own_process(&self, comm: &str) -> bool {
        match self {
            Self::MicroVm(vm) => vm.is_own_process(comm),
        }
    }

    /// The sandbox's state and progress.
    pub async fn status(&self, paths: &JobPaths) -> Result<SandboxStatus, SandboxError> {
        match self {
            Self::MicroVm(vm) => Ok(vm.status(paths).await?),
        }
    }

    /// Pauses (`pause`) or resumes the workload.
    pub async fn set_paused(&self, paths: &JobPaths, pause: bool) -> Result<(), SandboxError> {
        match self {
            Self::MicroVm(vm) => Ok(vm.set_paused(paths, pause).await?),
        }
    }

    /// Asks the workload to shut down (the supervisor kills the process after the grace).
    pub async fn shutdown(&self, paths: &JobPaths) -> Result<(), SandboxError> {
        match self {
            Self::MicroVm(vm) => Ok(vm.shutdown(paths).await?),
        }
    }
}
