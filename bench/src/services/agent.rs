//! colo-agent with its VMs: its configuration, start, job submission and shutdown.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Bins;
use crate::host::{HostError, signal};

/// A VM to submit.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Memory to touch, MiB.
    pub mem_touch_mib: u64,
    /// A disk file and `write:MiB` IO, if any.
    pub io: Option<(PathBuf, String)>,
    /// CPU work units before the IO (`u64::MAX`-like values burn until cancelled).
    pub cpu_units: u64,
    /// The disk's token bucket (`--disk PATH,bw=RATE`), e.g. `64MiB/s`; `None`: unlimited.
    pub disk_bw: Option<String>,
}

/// The CPU units of a VM that burns until it is cancelled (the headline's and the reaction's).
pub const BURN_UNITS: u64 = 1_000_000_000;

/// A container job to submit: a shell script run by busybox in `image`, with one volume.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The root filesystem (a directory beneath the agent's image root).
    pub image: PathBuf,
    /// A host directory beneath the volume root, mounted at `/data`.
    pub volume: PathBuf,
    /// The script (`sh -c`).
    pub script: String,
    /// Memory limit, MiB.
    pub memory_mib: u64,
    /// CPU limit, cores.
    pub vcpus: u32,
}

/// colo-agent in its own state directory, with the bench's cgroup root.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    /// Its directory (state, socket, config, log).
    pub dir: PathBuf,
    coloctl: PathBuf,
    /// Jobs submitted.
    pub jobs: Vec<String>,
}

/// How to run the agent.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// `cgroup.root`.
    pub root: String,
    /// The online service's cgroup path.
    pub online_cgroup: String,
    /// The online service's name (agent.yaml, ReportSli).
    pub service: String,
    /// The policy YAML.
    pub policy: String,
    /// Guest memory per VM, MiB (sets `offline.memory`).
    pub vm_memory_mib: u64,
    /// Extra lines for the online service's entry in agent.yaml (e.g. its `slo:`), indented
    /// by four spaces.
    pub service_extra: String,
}

impl Agent {
    /// Starts the agent; waits until it serves.
    pub fn start(bins: &Bins, dir: &Path, setup: &AgentSetup) -> Result<Self, HostError> {
        Self::start_with(bins, dir, setup, "")
    }

    /// [`Agent::start`] with extra lines for the `offline:` section of agent.yaml.
    pub fn start_with(
        bins: &Bins,
        dir: &Path,
        setup: &AgentSetup,
        extra_offline: &str,
    ) -> Result<Self, HostError> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|source| HostError::Io {
            op: "mkdir",
            path: dir.to_path_buf(),
            source,
        })?;
        let guest =
            colo_vmm::workload_guest_path().map_err(|e| HostError::Missing(e.to_string()))?;
        let policy = dir.join("policy.yaml");
        std::fs::write(&policy, &setup.policy).map_err(|source| HostError::Io {
            op: "write",
            path: policy.clone(),
            source,
        })?;
        let socket = dir.join("agent.sock");
        let yaml = format!(
            "node:\n  name: bench\ncgroup:\n  root: {root}\nservices:\n  - name: {service}\n    selector:\n      cgroups: [{online}]\n{service_extra}\
             offline:\n  workload: {guest}\n  vmm: {vmm}\n  state_dir: {state}\n  volume_roots: [{{path: {volumes}}}]\n  memory: {mem}MiB\n  memory_overhead: 64MiB\n  stop_grace: 2s\n  drain_on_shutdown: true\n{extra_offline}\
             api:\n  socket: {socket}\nmetrics:\n  listen: null\nloop:\n  period: 50ms\npolicy:\n  paths: [{policy}]\n",
            root = setup.root,
            online = setup.online_cgroup,
            guest = guest.display(),
            vmm = bins.get("colo-vmm")?.display(),
            state = dir.join("state").display(),
            // The VMs' disks sit beside the agent's directory, in the run's work directory.
            volumes = dir.parent().unwrap_or(dir).display(),
            mem = setup.vm_memory_mib.max(16),
            socket = socket.display(),
            policy = policy.display(),
            extra_offline = extra_offline,
            service_extra = setup.service_extra,
            service = setup.service,
        );
        let cfg = dir.join("agent.yaml");
        std::fs::write(&cfg, yaml).map_err(|source| HostError::Io {
            op: "write",
            path: cfg.clone(),
            source,
        })?;
        let log = std::fs::File::create(dir.join("agent.log")).map_err(|source| HostError::Io {
            op: "create",
            path: dir.join("agent.log"),
            source,
        })?;
        let child = Command::new(bins.get("colo-agent")?)
            .arg("--config")
            .arg(&cfg)
            .env("COLO_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|source| HostError::Io {
                op: "dup",
                path: dir.join("agent.log"),
                source,
            })?)
            .stderr(log)
            .spawn()
            .map_err(|source| HostError::Io {
                op: "spawn",
                path: PathBuf::from("colo-agent"),
                source,
            })?;
        let mut a = Self {
            child,
            dir: dir.to_path_buf(),
            coloctl: bins.get("coloctl")?,
            jobs: Vec::new(),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(st)) = a.child.try_wait() {
                return Err(HostError::Missing(format!(
                    "colo-agent exited ({st}); see {}/agent.log",
                    dir.display()
                )));
            }
            if a.ctl(&["node"]).is_ok() {
                return Ok(a);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HostError::Missing(format!(
            "colo-agent did not serve within 20 s; see {}/agent.log",
            dir.display()
        )))
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ctl(&self, args: &[&str]) -> Result<String, HostError> {
        let out = Command::new(&self.coloctl)
            .arg("--socket")
            .arg(self.dir.join("agent.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HostError::Io {
                op: "spawn",
                path: self.coloctl.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(HostError::Missing(format!(
                "coloctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Pushes latency observations of an online service (`coloctl report-sli`).
    pub fn report_sli(&self, service: &str, latency_us: &[u64]) -> Result<(), HostError> {
        let values: Vec<String> = latency_us.iter().map(u64::to_string).collect();
        let mut args = vec!["report-sli", "--service", service];
        args.extend(values.iter().map(String::as_str));
        self.ctl(&args).map(drop)
    }

    /// Submits one VM that burns CPU until cancelled (after touching memory / doing IO).
    pub fn submit(&mut self, name: &str, vm: &VmSpec) -> Result<String, HostError> {
        let vcpus = vm.vcpus.to_string();
        let mem = vm.memory_mib.to_string();
        let touch = vm.mem_touch_mib.to_string();
        let units = vm.cpu_units.to_string();
        let mut args = vec![
            "submit",
            "--name",
            name,
            "--vcpus",
            &vcpus,
            "--memory-mib",
            &mem,
            "--cpu-units",
            &units,
            "--output",
            "json",
        ];
        if vm.mem_touch_mib > 0 {
            args.extend(["--mem-mib", &touch]);
        }
        let disk;
        if let Some((path, io)) = &vm.io {
            disk = match &vm.disk_bw {
                Some(bw) => format!("{},bw={bw}", path.display()),
                None => path.display().to_string(),
            };
            args.extend(["--disk", &disk, "--io", io]);
        }
        self.submit_args(&args)
    }

    /// Submits one container job.
    pub fn submit_container(&mut self, name: &str, c: &ContainerSpec) -> Result<String, HostError> {
        let vcpus = c.vcpus.to_string();
        let mem = c.memory_mib.to_string();
        let image = c.image.display().to_string();
        let volume = format!("{}:/data", c.volume.display());
        self.submit_args(&[
            "submit",
            "--name",
            name,
            "--sandbox",
            "container",
            "--vcpus",
            &vcpus,
            "--memory-mib",
            &mem,
            "--image",
            &image,
            "--volume",
            &volume,
            "--output",
            "json",
            "--",
            "sh",
            "-c",
            &c.script,
        ])
    }

    fn submit_args(&mut self, args: &[&str]) -> Result<String, HostError> {
        let out = self.ctl(args)?;
        let id = serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| {
                v.pointer("/job/id")
                    .or_else(|| v.get("id"))
                    .and_then(|i| i.as_str())
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                HostError::Missing(format!("coloctl submit printed no job id: {out}"))
            })?;
        self.jobs.push(id.clone());
        Ok(id)
    }

    /// Submits one VM whose guest idles in `hlt` for `seconds`.
    pub fn submit_hold(&mut self, name: &str, seconds: u64) -> Result<String, HostError> {
        let secs = seconds.to_string();
        let out = self.ctl(&[
            "submit",
            "--name",
            name,
            "--vcpus",
            "1",
            "--memory-mib",
            "16",
            "--hold-seconds",
            &secs,
            "--output",
            "json",
        ])?;
        let id = serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
            .ok_or_else(|| {
                HostError::Missing(format!("coloctl submit printed no job id: {out}"))
            })?;
        self.jobs.push(id.clone());
        Ok(id)
    }

    /// Waits until every submitted job runs.
    pub fn wait_running(&self, limit: Duration) -> Result<(), HostError> {
        let t = Instant::now();
        'outer: while t.elapsed() < limit {
            for id in &self.jobs {
                let out = self.ctl(&["get", id, "--output", "json"])?;
                let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                let state = v
                    .pointer("/state")
                    .or_else(|| v.pointer("/job/state"))
                    .and_then(|s| s.as_str())
                    .unwrap_or("");
                if state != "running" && state != "paused" {
                    if ["failed", "succeeded", "cancelled", "preempted"].contains(&state) {
                        return Err(HostError::Missing(format!(
                            "job {id} ended ({state}) before the run: {out}"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue 'outer;
                }
            }
            return Ok(());
        }
        Err(HostError::Missing(format!(
            "VMs not running within {limit:?}; see {}/agent.log",
            self.dir.display()
        )))
    }

    /// The control socket of a job (the agent's registry keeps it in the job's `sandbox/`).
    pub fn control_socket(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/jobs")
            .join(id)
            .join("sandbox/control.sock")
    }

    /// Sum of the VMs' progress counters.
    pub fn progress(&self) -> u64 {
        self.jobs
            .iter()
            .filter_map(|id| colo_vmm::ControlClient::connect(self.control_socket(id)).ok())
            .filter_map(|mut c| c.stats().ok())
            .map(|s| s.progress)
            .sum()
    }

    /// Bytes the VMs' disks moved (read + written), summed over the jobs.
    pub fn disk_bytes(&self) -> u64 {
        self.jobs
            .iter()
            .filter_map(|id| colo_vmm::ControlClient::connect(self.control_socket(id)).ok())
            .filter_map(|mut c| c.stats().ok())
            .flat_map(|s| s.disks)
            .map(|d| d.read_bytes + d.write_bytes)
            .sum()
    }

    /// Counts of QoS actions in the agent's log.
    pub fn actions_logged(&self) -> usize {
        std::fs::read_to_string(self.dir.join("agent.log"))
            .map_or(0, |t| t.lines().filter(|l| l.contains(" apply ")).count())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // drain_on_shutdown: SIGTERM stops every VM, then the agent.
        signal(self.child.id(), libc::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
