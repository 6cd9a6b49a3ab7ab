//! The container sandbox: a user program in an OCI container, run by an existing OCI runtime
//! (runc or crun) under a per-job monitor ([`monitor`], the `colo-monitor` binary).
//!
//! The agent resolves the job's image and volumes beneath the operator's roots, writes the
//! bundle (`<job dir>/bundle/config.json`, see [`colo_oci::bundle`]) and launches the monitor in
//! the job's cgroup, as it launches a VMM. The container's cgroup is the job's `vcpu` cgroup
//! (`cgroupsPath`), so the QoS loop's vCPU quota and SCHED_IDLE act on the container's
//! processes; the job's memory, pids and IO limits hold the container and its monitor together.
//!
//! | sandbox call | container |
//! |---|---|
//! | launch | `colo-monitor` (it runs `<runtime> run --detach`) |
//! | `started` | the monitor's `started` line (monitor pid, container init pid) |
//! | status, pause, resume | `<runtime> state / pause / resume` (the freezer) |
//! | shutdown, kill | SIGTERM, SIGKILL to the container's init (its pid namespace ends with it) |
//! | exit record | the monitor's [`ContainerExit`] |

pub mod exit;
pub mod monitor;
pub mod mounts;
mod prepare;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use colo_oci::image::ImageStore;
use colo_oci::oci_spec::runtime::LinuxSeccomp;
use colo_oci::runtime::{OciRuntime, RuntimeError, Status};

pub use exit::ContainerExit;
pub use prepare::prepare;

use super::SandboxStatus;
use crate::jobs::launch::WaitStatus;
use crate::jobs::model::{EndReason, JobState, StopIntent};
use crate::jobs::outcome::{self, Outcome};
use crate::jobs::registry::JobPaths;

/// The name (`comm`) of a monitor process, to find it in a job's cgroup.
const PROCESS_NAME: &str = "colo-monitor";

/// Errors of a container job's runtime calls.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The node offers no container sandbox.
    #[error("the container sandbox is not available on this node: {0}")]
    Unavailable(String),
    /// The OCI runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The container's init is not known (no `started` line) or no longer in the job's cgroup.
    #[error("the container's init process is not known: {0}")]
    NoInit(String),
    /// A signal could not be sent.
    #[error("cannot signal the container's init {pid}: {source}")]
    Signal {
        /// The init.
        pid: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blocking call could not run.
    #[error("{0}")]
    Join(String),
}

/// What the node needs to run containers, found once at start (shared behind an `Arc`).
#[derive(Debug)]
pub struct ContainerHost {
    /// The OCI runtime, with its state root.
    pub runtime: OciRuntime,
    /// The `colo-monitor` binary.
    pub monitor: PathBuf,
    /// The seccomp filter every container gets.
    pub seccomp: Option<LinuxSeccomp>,
    /// Containers share the host's network namespace.
    pub host_network: bool,
    /// Size of each container's `/tmp`.
    pub scratch_bytes: u64,
    /// Unpacked images.
    pub images: ImageStore,
}

/// Whether the node offers the container sandbox: the host, or why not.
pub type Availability = Result<Arc<ContainerHost>, String>;

/// A job's container.
#[derive(Debug, Clone)]
pub struct Container {
    host: Availability,
    log_limit: u64,
    create_timeout: Duration,
}

/// The container id of a job (the runtime's name for it).
pub fn container_id(job: &str) -> String {
    format!("colo-{job}")
}

/// The bundle directory of a job.
pub fn bundle_dir(paths: &JobPaths) -> PathBuf {
    paths.dir.join("bundle")
}

impl Container {
    /// The container of a job on a node whose sandbox is `host`, started within the agent's
    /// `start_timeout`: its runtime gets three quarters of that to create it, so that the
    /// monitor, not the agent, ends a creation that hangs (and cleans up after it).
    pub fn new(host: Availability, log_limit: u64, start_timeout: Duration) -> Self {
        Self {
            host,
            log_limit,
            create_timeout: start_timeout.mul_f64(0.75),
        }
    }

    /// How long the runtime may take to create the container.
    pub fn create_timeout(&self) -> Duration {
        self.create_timeout
    }

    pub(crate) fn host(&self) -> Result<&ContainerHost, ContainerError> {
        self.host
            .as_deref()
            .map_err(|why| ContainerError::Unavailable(why.clone()))
    }

    /// The bound on the job's console output.
    pub fn log_limit(&self) -> u64 {
        self.log_limit
    }

    /// Whether a process named `comm` is a container monitor.
    pub fn is_own_process(&self, comm: &str) -> bool {
        comm.starts_with(PROCESS_NAME)
    }

    /// The container's init, from the monitor's `started` line, if it still runs (a pid that
    /// left the job's container cgroup is not the init any more).
    pub fn init_pid(&self, paths: &JobPaths) -> Option<u32> {
        let out = std::fs::read_to_string(&paths.output).ok()?;
        monitor::parse_started(&out).map(|(_, init)| init)
    }

    /// Paused or running, from the runtime.
    pub async fn status(&self, id: &str) -> Result<SandboxStatus, ContainerError> {
        let rt = self.host()?.runtime.clone();
        let cid = container_id(id);
        let st = blocking(move || rt.state(&cid)).await??;
        Ok(SandboxStatus {
            paused: st.is_some_and(|s| s.status == Status::Paused),
            progress: 0,
        })
    }

    /// Freezes or thaws every process of the container.
    pub async fn set_paused(&self, id: &str, pause: bool) -> Result<(), ContainerError> {
        let rt = self.host()?.runtime.clone();
        let cid = container_id(id);
        blocking(move || {
            if pause {
                rt.pause(&cid)
            } else {
                rt.resume(&cid)
            }
        })
        .await??;
        Ok(())
    }

    /// Sends `signal` to the container's init (SIGTERM asks it to end; SIGKILL ends its whole
    /// pid namespace). A paused container is thawed after a SIGKILL so that it can die.
    pub async fn signal(
        &self,
        id: &str,
        paths: &JobPaths,
        signal: i32,
    ) -> Result<(), ContainerError> {
        let pid = self
            .init_pid(paths)
            .ok_or_else(|| ContainerError::NoInit("no started line yet".into()))?;
        let pid_t = libc::pid_t::try_from(pid)
            .map_err(|_| ContainerError::NoInit(format!("pid {pid} out of range")))?;
        // SAFETY: kill(2) with plain integers. The pid is the init the monitor reported; the
        // monitor reaps it, so it stays this process until the monitor has seen it end.
        if unsafe { libc::kill(pid_t, signal) } != 0 {
            let source = std::io::Error::last_os_error();
            if source.raw_os_error() != Some(libc::ESRCH) {
                return Err(ContainerError::Signal { pid, source });
            }
        }
        if signal == libc::SIGKILL {
            let rt = self.host()?.runtime.clone();
            let cid = container_id(id);
            let _ = blocking(move || rt.resume(&cid)).await;
        }
        Ok(())
    }

    /// Removes what the container leaves: its runtime state (killing anything left, when its
    /// monitor died first), its staged mounts and its bundle.
    pub fn cleanup(&self, id: &str, paths: &JobPaths) {
        if let Ok(host) = self.host()
            && let Err(e) = host.runtime.delete(&container_id(id))
        {
            tracing::warn!(job = %id, error = %e, "cannot delete the container");
        }
        // The monitor unmounts these when the container ends; this covers a monitor that died.
        if let Err(e) = mounts::unstage(&paths.mounts) {
            tracing::warn!(job = %id, dir = %paths.mounts.display(), error = %e, "cannot unmount the job's volumes");
        }
        let bundle = bundle_dir(paths);
        if let Err(e) = std::fs::remove_dir_all(&bundle)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(job = %id, dir = %bundle.display(), error = %e, "cannot remove the bundle");
        }
    }
}

/// Runs a blocking runtime call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ContainerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContainerError::Join(e.to_string()))
}

/// The outcome of a container job from its monitor's record (if it left one), the monitor's
/// wait status and the stop the agent asked for.
pub fn decide(
    record: Option<&ContainerExit>,
    wait: Option<WaitStatus>,
    intent: Option<&StopIntent>,
) -> Outcome {
    let Some(r) = record else {
        let mut o = outcome::decide(None, wait, intent);
        if intent.is_none() {
            o.message = format!(
                "the container's monitor ended without an exit record ({})",
                o.message
            );
        }
        return o;
    };
    let mut o = if r.failed_to_start {
        Outcome::plain(
            JobState::Failed,
            EndReason::VmmFailed,
            format!("the container could not start: {}", r.message),
        )
    } else if r.exit_code == 0 && r.signal.is_none() {
        Outcome::plain(JobState::Succeeded, EndReason::Completed, r.message.clone())
    } else if let Some(i) = intent {
        let mut o = outcome::decide(None, None, Some(i));
        o.message = format!("{} ({})", o.message, r.message);
        o
    } else if r.oom_killed {
        Outcome::plain(
            JobState::Failed,
            EndReason::OomKilled,
            format!(
                "a process of the container was killed for exceeding the job's memory limit; {}",
                r.message
            ),
        )
    } else {
        Outcome::plain(
            JobState::Failed,
            EndReason::GuestExitNonzero,
            r.message.clone(),
        )
    };
    if !r.failed_to_start {
        o.exit_code = Some(r.exit_code);
    }
    o.ended_unix_ms = Some(r.ended_unix_ms);
    o
}

/// Finds what the node needs for containers (see [`ContainerHost`]), its image store under
/// `state_dir/images`; the error says what is missing and how to fix it.
pub fn detect(cfg: &colo_config::agent::ContainerConfig, state_dir: &Path) -> Availability {
    if !cfg.enabled {
        return Err("disabled (offline.container.enabled: false)".into());
    }
    let runtime =
        OciRuntime::detect(cfg.runtime.as_deref(), &cfg.runtime_root).map_err(|e| e.to_string())?;
    let monitor = super::find_binary(PROCESS_NAME, cfg.monitor.as_deref()).ok_or_else(|| {
        "colo-monitor not found next to colo-agent or on PATH; install it or set \
         offline.container.monitor"
            .to_string()
    })?;
    let seccomp = match &cfg.seccomp_profile {
        None => None,
        Some(p) => Some(load_seccomp(p)?),
    };
    let store = state_dir.join("images");
    let images = ImageStore::open(&store, cfg.image_store.bytes())
        .map_err(|e| format!("the image store {}: {e}", store.display()))?;
    Ok(Arc::new(ContainerHost {
        runtime,
        monitor,
        seccomp,
        host_network: cfg.host_network,
        scratch_bytes: cfg.scratch.bytes(),
        images,
    }))
}

/// Reads and converts the containers-common seccomp profile at `path` for the default
/// capability set.
fn load_seccomp(path: &Path) -> Result<LinuxSeccomp, String> {
    colo_oci::seccomp::load_containers_profile(
        path,
        colo_oci::bundle::DEFAULT_CAPABILITIES,
        colo_oci::seccomp::running_kernel(),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(code: i32, signal: Option<i32>, oom: bool) -> ContainerExit {
        ContainerExit {
            exit_code: code,
            signal,
            oom_killed: oom,
            failed_to_start: false,
            message: "m".into(),
            ended_unix_ms: 9,
            monitor_pid: 1,
        }
    }

    #[test]
    fn exit_codes_and_oom_decide_the_outcome() {
        let o = decide(Some(&rec(0, None, false)), None, None);
        assert_eq!(
            (o.state, o.reason, o.exit_code),
            (JobState::Succeeded, EndReason::Completed, Some(0))
        );
        let o = decide(Some(&rec(7, None, false)), None, None);
        assert_eq!(
            (o.state, o.reason, o.exit_code),
            (JobState::Failed, EndReason::GuestExitNonzero, Some(7))
        );
        let o = decide(Some(&rec(137, Some(9), true)), None, None);
        assert_eq!(
            (o.state, o.reason),
            (JobState::Failed, EndReason::OomKilled)
        );
        let stop = StopIntent {
            kind: crate::jobs::model::StopKind::Evict,
            reason: "psi".into(),
            requested_unix_ms: 1,
        };
        let o = decide(Some(&rec(143, Some(15), false)), None, Some(&stop));
        assert_eq!(
            (o.state, o.reason),
            (JobState::Preempted, EndReason::Evicted)
        );
        assert!(o.message.contains("psi"), "{}", o.message);
        let mut failed = rec(127, None, false);
        failed.failed_to_start = true;
        let o = decide(Some(&failed), None, None);
        assert_eq!(
            (o.state, o.reason, o.exit_code),
            (JobState::Failed, EndReason::VmmFailed, None)
        );
        let o = decide(None, Some(WaitStatus::Signaled(9)), None);
        assert_eq!(o.state, JobState::Failed);
        assert!(o.message.contains("monitor"), "{}", o.message);
    }
}
