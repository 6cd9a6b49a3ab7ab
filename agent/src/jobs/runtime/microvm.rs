//! The MicroVM sandbox: the agent's side of the colo-vmm contract (docs/vmm.md): the command
//! line it starts a VMM with, the `started` line, the exit record and the control socket (async
//! wrappers around the blocking client, so a slow VMM never stalls the runtime).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use colo_vmm::control::VmState;
pub use colo_vmm::{ControlClient, ControlClientError, ExitReason, ExitRecord, Stats};

use super::linux::session::GuestLink;
use super::{SandboxStatus, StartedLine};
use crate::jobs::config::ManagerConfig;
use crate::jobs::model::{Guest, JobSpec};
use crate::jobs::registry::JobPaths;

/// The prefix of a VMM process's name (`comm`), to find it in a job's cgroup.
const PROCESS_NAME: &str = "colo-vmm";
/// The prefix of a vCPU thread's name (`colo-vcpu-N`).
pub const VCPU_THREAD: &str = "colo-vcpu-";

/// A job's MicroVM: one `colo-vmm` process, driven over its control socket.
#[derive(Debug, Clone)]
pub struct MicroVm {
    binary: PathBuf,
    workload_guest: PathBuf,
    log_limit: u64,
    control_timeout: Duration,
    /// The node's Linux-guest programs (or why it has none).
    pub linux: super::linux::Availability,
    /// The link to a Linux guest's in-guest agent (a job with a program).
    pub guest: Option<Arc<GuestLink>>,
}

impl MicroVm {
    /// The MicroVM of the agent's configuration.
    pub fn new(cfg: &ManagerConfig) -> Self {
        Self {
            binary: cfg.vmm_binary.clone(),
            workload_guest: cfg.workload_guest.clone(),
            log_limit: cfg.log_limit,
            control_timeout: cfg.control_timeout,
            linux: cfg.linux.clone(),
            guest: None,
        }
    }

    /// The MicroVM of a job: with a link to its in-guest agent when it runs a program.
    pub fn for_job(cfg: &ManagerConfig, spec: &JobSpec) -> Self {
        let mut vm = Self::new(cfg);
        if super::linux::program(spec).is_some() {
            vm.guest = Some(Arc::new(GuestLink::default()));
        }
        vm
    }

    /// Starts following the in-guest agent of a job with a program (its VMM runs).
    pub fn attach(&self, id: &str, paths: &JobPaths) {
        if let Some(g) = &self.guest {
            g.start(id, &paths.channel, &paths.guest, self.log_limit);
        }
    }

    /// The `colo-vmm run` command line of a job.
    pub fn command(&self, spec: &JobSpec, paths: &JobPaths) -> (PathBuf, Vec<OsString>) {
        let args = run_args(spec, paths, &self.workload_guest, self.log_limit);
        (self.binary.clone(), args)
    }

    /// Whether a process named `comm` is a VMM.
    pub fn is_own_process(&self, comm: &str) -> bool {
        comm.starts_with(PROCESS_NAME)
    }

    /// The VMM's state and progress, from its control socket.
    pub async fn status(&self, paths: &JobPaths) -> Result<SandboxStatus, ControlClientError> {
        let st = control(&paths.control, self.control_timeout, |c| c.stats()).await?;
        Ok(SandboxStatus {
            paused: st.state == VmState::Paused,
            progress: st.progress,
        })
    }

    /// Stops (`pause`) or restarts the vCPUs.
    pub async fn set_paused(
        &self,
        paths: &JobPaths,
        pause: bool,
    ) -> Result<(), ControlClientError> {
        control(&paths.control, self.control_timeout, move |c| {
            if pause { c.pause() } else { c.resume() }
        })
        .await
    }

    /// Asks the guest to shut down: a program gets SIGTERM from its in-guest agent (the guest
    /// powers off once it has ended); any other guest the VMM's shutdown.
    pub async fn shutdown(&self, paths: &JobPaths) -> Result<(), ControlClientError> {
        if self
            .guest
            .as_ref()
            .is_some_and(|g| g.signal(libc::SIGTERM as u32))
        {
            return Ok(());
        }
        control(&paths.control, self.control_timeout, |c| c.shutdown()).await
    }
}

/// The `colo-vmm run` arguments for a job; `log_limit` bounds its serial console and logs.
pub fn run_args(
    spec: &JobSpec,
    paths: &JobPaths,
    workload_guest: &Path,
    log_limit: u64,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["run".into()];
    let mut push = |k: &str, v: OsString| {
        a.push(k.into());
        a.push(v);
    };
    match &spec.guest {
        Guest::Workload(w) => {
            push("--kernel", workload_guest.into());
            push("--cmdline", w.cmdline().into());
        }
        Guest::Linux(l) => {
            push("--kernel", l.kernel.clone().into());
            if !l.cmdline.is_empty() {
                push("--cmdline", l.cmdline.clone().into());
            }
            if let Some(rootfs) = &l.rootfs {
                let mut v: OsString = rootfs.clone().into();
                // A program's root: the guest writes to an overlay above it, never to the image.
                if l.program.is_some() {
                    v.push(",ro");
                }
                push("--disk", v);
            }
        }
        // Never launched in a MicroVM (`Sandbox::for_job` picks the container sandbox).
        Guest::Container(_) => {}
    }
    push("--vcpus", spec.vcpus.to_string().into());
    push("--memory-mib", spec.memory_mib.to_string().into());
    push("--serial", paths.serial.clone().into());
    push("--log", paths.log.clone().into());
    push("--log-limit", log_limit.to_string().into());
    push("--control-socket", paths.control.clone().into());
    push("--exit-record", paths.exit_record.clone().into());
    for d in &spec.disks {
        let mut v: OsString = d.path.clone().into();
        if d.read_only {
            v.push(",ro");
        }
        if d.bandwidth_bps > 0 {
            v.push(format!(",bw={}", d.bandwidth_bps));
        }
        if d.iops > 0 {
            v.push(format!(",iops={}", d.iops));
        }
        push("--disk", v);
    }
    a
}

/// The arguments that jail a VMM as `uid` (its gid is the same number).
pub fn jail_args(uid: u32) -> [OsString; 4] {
    [
        "--jail-uid".into(),
        uid.to_string().into(),
        "--jail-gid".into(),
        uid.to_string().into(),
    ]
}

/// Finds and parses `colo-vmm: started pid=<pid> vcpu_tids=<t0>,<t1> io_tid=<tid or ->` in
/// the VMM's output.
pub fn parse_started(output: &str) -> Option<StartedLine> {
    let line = output
        .lines()
        .find_map(|l| l.find("colo-vmm: started ").map(|i| &l[i..]))?;
    let mut pid = None;
    let mut vcpu_tids = None;
    let mut io_tid = None;
    for kv in line.split_whitespace() {
        match kv.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("vcpu_tids", v)) => {
                vcpu_tids = v
                    .split(',')
                    .map(|t| t.parse::<u32>().ok())
                    .collect::<Option<Vec<u32>>>()
            }
            Some(("io_tid", v)) => io_tid = Some(v.parse::<u32>().ok()),
            _ => {}
        }
    }
    Some(StartedLine {
        pid: pid?,
        vcpu_tids: vcpu_tids?,
        io_tid: io_tid?,
    })
}

/// Runs one blocking control request on the blocking pool, bounded by `timeout`.
pub async fn control<T, F>(socket: &Path, timeout: Duration, op: F) -> Result<T, ControlClientError>
where
    T: Send + 'static,
    F: FnOnce(&mut ControlClient) -> Result<T, ControlClientError> + Send + 'static,
{
    let socket: PathBuf = socket.into();
    let path = socket.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut c = ControlClient::connect_with_timeout(&socket, timeout)?;
        op(&mut c)
    });
    match tokio::time::timeout(timeout + Duration::from_secs(1), task).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(ControlClientError::Io {
            path,
            source: std::io::Error::other(join.to_string()),
        }),
        Err(_) => Err(ControlClientError::Io {
            path,
            source: std::io::Error::from(std::io::ErrorKind::TimedOut),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::{DiskSpec, QosClass, WorkloadGuest};

    #[test]
    fn parses_the_started_line() {
        let out = "noise\ncolo-vmm: started pid=42 vcpu_tids=43,44 io_tid=-\n";
        assert_eq!(
            parse_started(out),
            Some(StartedLine {
                pid: 42,
                vcpu_tids: vec![43, 44],
                io_tid: None
            })
        );
        let out = "[0.001] colo-vmm: started pid=7 vcpu_tids=8 io_tid=9";
        assert_eq!(parse_started(out).unwrap().io_tid, Some(9));
        assert_eq!(parse_started("colo-vmm: started pid=7"), None);
        assert_eq!(parse_started(""), None);
    }

    #[test]
    fn run_args_follow_the_contract() {
        let spec = JobSpec {
            idempotency_key: "k".into(),
            name: String::new(),
            guest: Guest::Workload(WorkloadGuest {
                cpu_units: 5,
                exit_code: 2,
                ..Default::default()
            }),
            vcpus: 2,
            memory_mib: 64,
            disks: vec![DiskSpec {
                path: "/d.img".into(),
                read_only: true,
                bandwidth_bps: 100,
                iops: 0,
            }],
            qos_class: QosClass::Batch,
            priority: 0,
            labels: Default::default(),
            deadline_seconds: 0,
        };
        let reg =
            crate::jobs::registry::Registry::open(tempfile::tempdir().unwrap().path()).unwrap();
        let a: Vec<String> = run_args(&spec, &reg.paths("j"), Path::new("/g"), 65536)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = a.join(" ");
        assert!(
            joined.starts_with("run --kernel /g --cmdline cpu=5 exit=2 --vcpus 2 --memory-mib 64"),
            "{joined}"
        );
        assert!(joined.contains("--exit-record "), "{joined}");
        assert!(joined.contains("--log-limit 65536 "), "{joined}");
        assert!(joined.ends_with("--disk /d.img,ro,bw=100"), "{joined}");
    }
}
