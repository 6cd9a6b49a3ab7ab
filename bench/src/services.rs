//! The processes a benchmark run drives: nginx (the online service), colo-agent with its VMs,
//! stress-ng (the control row), and the load generator.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::{BenchCgroup, HostError, signal, spawn_in};

/// Where the binaries are (`colo-agent`, `coloctl`, `colo-vmm`, `colo-loadgen`).
#[derive(Debug, Clone)]
pub struct Bins {
    /// The directory.
    pub dir: PathBuf,
}

impl Bins {
    /// The directory of the running executable (cargo puts every binary of the workspace there).
    pub fn beside_me() -> Self {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        Self { dir }
    }

    /// A binary's path; fails naming the build command when it is missing.
    pub fn get(&self, name: &str) -> Result<PathBuf, HostError> {
        let p = self.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(HostError::Missing(format!(
                "{} not found: build it (cargo build --release -p colo-agent -p coloctl -p colo-vmm -p colo-bench)",
                p.display()
            )))
        }
    }
}

/// Waits until `addr` accepts a TCP connection.
pub fn wait_port(addr: SocketAddr, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// nginx with one worker serving one small file, in the online cgroup.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// Address it listens on.
    pub addr: SocketAddr,
    /// The file it serves.
    pub path: String,
    /// Its working directory (logs, root).
    pub dir: PathBuf,
}

impl Nginx {
    /// Writes the configuration and a `size`-byte file under `dir` and starts nginx in `cg`.
    pub fn start(dir: &Path, port: u16, size: usize, cg: &BenchCgroup) -> Result<Self, HostError> {
        let www = dir.join("www");
        let logs = dir.join("logs");
        for d in [&www, &logs] {
            std::fs::create_dir_all(d).map_err(|source| HostError::Io {
                op: "mkdir",
                path: d.clone(),
                source,
            })?;
        }
        let body: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(www.join("index.html"), body).map_err(|source| HostError::Io {
            op: "write",
            path: www.clone(),
            source,
        })?;
        // Workers run as the bench's own user (root), not nginx's default `nobody`: an `--out`
        // made by `mktemp -d` (mode 0700) or a tight umask would keep `nobody` out of the
        // document root, and every request would fail.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {logs}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log {logs}/access.log;\n  keepalive_requests 100000000;\n  keepalive_timeout 600s;\n\
             server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    root {www};\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            logs = logs.display(),
            www = www.display(),
        );
        let cpath = dir.join("nginx.conf");
        std::fs::write(&cpath, conf).map_err(|source| HostError::Io {
            op: "write",
            path: cpath.clone(),
            source,
        })?;
        let nginx = which("nginx").ok_or_else(|| {
            HostError::Missing(
                "nginx not found: apt-get install nginx-light (scripts/install-deps.sh)".into(),
            )
        })?;
        let mut cmd = Command::new(nginx);
        cmd.arg("-c")
            .arg(&cpath)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_in(&mut cmd, &cg.procs_files())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !wait_port(addr, Duration::from_secs(10)) {
            return Err(HostError::Missing(format!(
                "nginx did not listen on {addr}; see {}/error.log",
                logs.display()
            )));
        }
        Ok(Self {
            child,
            addr,
            path: "/index.html".into(),
            dir: dir.to_path_buf(),
        })
    }

    /// nginx's error log (kept for the whole benchmark; [`Nginx::error_log_since`] reads a run's
    /// part).
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("logs/error.log")
    }

    /// The error log's length now, to read what a run adds.
    pub fn error_log_len(&self) -> u64 {
        std::fs::metadata(self.error_log()).map_or(0, |m| m.len())
    }

    /// What the error log gained since it was `offset` bytes long.
    pub fn error_log_since(&self, offset: u64) -> String {
        let Ok(bytes) = std::fs::read(self.error_log()) else {
            return String::new();
        };
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// Truncates the access log (it grows by ~100 bytes per request).
    pub fn rotate_log(&self) {
        let _ = std::fs::write(self.dir.join("logs/access.log"), "");
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid"))
            && let Ok(p) = pid.trim().parse()
        {
            signal(p, libc::SIGUSR1);
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGQUIT);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a program on PATH (and in /usr/sbin, where Debian puts nginx).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

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
            "node:\n  name: bench\ncgroup:\n  root: {root}\nservices:\n  - name: nginx\n    selector:\n      cgroups: [{online}]\n{service_extra}\
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
        let mut args = vec![
            "submit",
            "--name",
            name,
            "--vcpus",
            &vcpus,
            "--memory-mib",
            &mem,
            "--cpu-units",
            "1000000000",
            "--output",
            "json",
        ];
        if vm.mem_touch_mib > 0 {
            args.extend(["--mem-mib", &touch]);
        }
        let disk;
        if let Some((path, io)) = &vm.io {
            disk = path.display().to_string();
            args.extend(["--disk", &disk, "--io", io]);
        }
        let out = self.ctl(&args)?;
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

    /// The control socket of a job.
    pub fn control_socket(&self, id: &str) -> PathBuf {
        self.dir.join("state/jobs").join(id).join("control.sock")
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

/// stress-ng as the control row's hog, in a cgroup, SCHED_IDLE like colo's VMs.
#[derive(Debug)]
pub struct StressNg {
    child: Child,
    yaml: PathBuf,
}

impl StressNg {
    /// Starts `stress-ng <args> --metrics-brief --yaml FILE` under `chrt --idle 0` in `cg`.
    pub fn start(args: &[String], dir: &Path, cg: &BenchCgroup) -> Result<Self, HostError> {
        let stress = which("stress-ng").ok_or_else(|| {
            HostError::Missing(
                "stress-ng not found: apt-get install stress-ng (scripts/install-deps.sh)".into(),
            )
        })?;
        let yaml = dir.join("stress.yaml");
        let _ = std::fs::remove_file(&yaml);
        let mut cmd = Command::new(which("chrt").unwrap_or_else(|| PathBuf::from("chrt")));
        cmd.args(["--idle", "0"])
            .arg(stress)
            .args(args)
            .arg("--metrics-brief")
            .arg("--yaml")
            .arg(&yaml)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_in(&mut cmd, &cg.procs_files())?;
        Ok(Self { child, yaml })
    }

    /// Stops it and returns its bogo-ops per second (summed over stressors).
    pub fn stop(mut self) -> f64 {
        signal(self.child.id(), libc::SIGINT);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.yaml).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("bogo-ops-per-second-real-time:"))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum()
    }
}

/// Runs colo-loadgen in `cg` and returns its JSON report.
#[allow(clippy::too_many_arguments)]
pub fn loadgen(
    bins: &Bins,
    cg: &BenchCgroup,
    addr: SocketAddr,
    path: &str,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    extra: &[String],
) -> Result<(Child, PathBuf), HostError> {
    let out = std::env::temp_dir().join(format!("colo-bench-loadgen-{}.json", std::process::id()));
    let f = std::fs::File::create(&out).map_err(|source| HostError::Io {
        op: "create",
        path: out.clone(),
        source,
    })?;
    let mut cmd = Command::new(bins.get("colo-loadgen")?);
    cmd.arg("--addr")
        .arg(addr.to_string())
        .arg("--path")
        .arg(path)
        .arg("--rate")
        .arg(rate.to_string())
        .arg("--duration")
        .arg(duration.as_secs_f64().to_string())
        .arg("--warmup")
        .arg(warmup.as_secs_f64().to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(Stdio::inherit());
    let child = spawn_in(&mut cmd, &cg.procs_files())?;
    Ok((child, out))
}

/// Writes `text` to `path`, creating parents.
pub fn write_file(path: &Path, text: &str) -> Result<(), HostError> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|source| HostError::Io {
            op: "mkdir",
            path: p.to_path_buf(),
            source,
        })?;
    }
    let mut f = std::fs::File::create(path).map_err(|source| HostError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    })?;
    f.write_all(text.as_bytes())
        .map_err(|source| HostError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        })
}
