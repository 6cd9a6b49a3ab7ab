//! A real colo-agent process for integration tests: its own state directory, Unix socket and
//! cgroup subtree (a `TestCgroup` as the agent's cgroup root), talked to over gRPC.

#![allow(dead_code, missing_docs)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use colo_proto::agent::agent_client::AgentClient;
use colo_testkit::TestCgroup;
use tonic::transport::Channel;

/// The controllers the agent uses on v1.
pub const CONTROLLERS: &[&str] = &["pids", "cpu", "cpuacct", "blkio"];

/// `target/debug` (or release) of this test binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The colo-vmm binary built in this workspace, if any.
pub fn vmm_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COLO_VMM_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = target_dir().join("colo-vmm");
    p.is_file().then_some(p)
}

/// Root, KVM and a built colo-vmm, or a loud skip (a failure under COLO_REQUIRE_KVM=1).
pub fn vm_guard(test: &str) -> Option<colo_testkit::HostLock> {
    if !colo_testkit::root_or_skip(test) || !colo_testkit::kvm_or_skip(test) {
        return None;
    }
    if vmm_binary().is_none() {
        let required = std::env::var("COLO_REQUIRE_KVM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: target/<profile>/colo-vmm is missing; build it with `cargo build -p colo-vmm`"
        );
        eprintln!("\n*** SKIPPED {test}: colo-vmm is not built (cargo build -p colo-vmm) ***\n");
        return None;
    }
    Some(colo_testkit::host_lock())
}

/// An OCI runtime (runc or crun) on `PATH`, or a loud skip (a failure under
/// `COLO_REQUIRE_KVM=1`, as CI installs runc).
pub fn oci_runtime_or_skip(test: &str) -> bool {
    // As the agent looks for one.
    if colo_oci::runtime::find_on_path(colo_oci::runtime::KNOWN_RUNTIMES).is_some() {
        return true;
    }
    let required = std::env::var("COLO_REQUIRE_KVM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: no runc or crun; run scripts/install-deps.sh"
    );
    eprintln!("\n*** SKIPPED {test}: no OCI runtime (apt-get install runc) ***\n");
    false
}

/// Root and the host lock, or a loud skip.
pub fn root_guard(test: &str) -> Option<colo_testkit::HostLock> {
    if !colo_testkit::root_or_skip(test) {
        return None;
    }
    Some(colo_testkit::host_lock())
}

/// A current-thread tokio runtime for a test's gRPC calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The policy of a test agent that names none: the defaults in `observe` mode, so that a test not
/// about the QoS loop is never disturbed by it (a loaded host must not squeeze, pause or evict its
/// jobs). Tests about the loop give their own policy and control their own load.
pub const OBSERVE_POLICY: &str = "apiVersion: colo/v1\nkind: Policy\nmode: observe\n";

/// Options of a test agent.
#[derive(Debug, Clone)]
pub struct Options {
    pub budget_cpu: f64,
    pub budget_memory: &'static str,
    pub extra_offline: String,
    pub extra: String,
    pub policy: Option<String>,
    pub env: Vec<(String, String)>,
    pub metrics: bool,
    /// Mount a tmpfs of this size (`size=` option, e.g. `1m`) as the state directory.
    pub state_tmpfs: Option<&'static str>,
    /// Lines under `offline.container` (indented four spaces) besides its `runtime_root`, which
    /// is the test's own directory.
    pub container: String,
    /// The VMM binary instead of the built colo-vmm (a stand-in).
    pub vmm: Option<PathBuf>,
    /// `offline.memory_overhead` (default 48MiB).
    pub memory_overhead: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            budget_cpu: 64.0,
            budget_memory: "4GiB",
            extra_offline: String::new(),
            extra: String::new(),
            policy: None,
            env: vec![],
            metrics: false,
            state_tmpfs: None,
            container: String::new(),
            vmm: None,
            memory_overhead: "48MiB",
        }
    }
}

/// A tmpfs mounted for a test, unmounted when dropped (also when the test fails).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0700").as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t tmpfs -o size={size} {}: {e}", path.display()));
        Self { path: path.into() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a VMM a failed test left behind may still hold a file open.
        if let Err(e) = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("umount {}: {e}", self.path.display());
        }
    }
}

/// A running agent.
pub struct TestAgent {
    /// Declared first: dropped (unmounted) before `dir` is removed.
    pub state_tmpfs: Option<Tmpfs>,
    pub dir: tempfile::TempDir,
    pub cgroup: TestCgroup,
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub metrics_addr: Option<std::net::SocketAddr>,
    opts: Options,
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestAgent {
    /// Starts an agent; panics if it does not serve within 20 s.
    pub fn start(opts: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("colo-agent-test")
            .tempdir()
            .expect("tempdir");
        let cgroup = TestCgroup::new(CONTROLLERS, 8 << 30).expect("test cgroup");
        let socket = dir.path().join("agent.sock");
        // Client files (kernels, disks) may be named only beneath these.
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        std::fs::create_dir_all(dir.path().join("volumes")).unwrap();
        let config = dir.path().join("agent.yaml");
        let log = dir.path().join("agent.log");
        let policy = dir.path().join("policy.yaml");
        std::fs::write(
            &policy,
            opts.policy.clone().unwrap_or_else(|| OBSERVE_POLICY.into()),
        )
        .unwrap();
        let metrics_addr = opts
            .metrics
            .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], free_port())));
        let vmm = opts
            .vmm
            .clone()
            .or_else(vmm_binary)
            .map(|p| format!("  vmm: {}\n", p.display()))
            .unwrap_or_default();
        let workload = workload_guest()
            .map(|p| format!("  workload: {}\n", p.display()))
            .unwrap_or_default();
        // A slow host (the TCG test host emulates every instruction) gives sandboxes longer to
        // start than the agent's default.
        let start_timeout = std::env::var("COLO_TEST_START_TIMEOUT")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| format!("  start_timeout: {s}\n"))
            .unwrap_or_default();
        let yaml = format!(
            "node:\n  name: test-node\ncgroup:\n  root: /{cg}\noffline:\n  state_dir: {state}\n  image_roots: [{{path: {images}}}]\n  volume_roots: [{{path: {volumes}}}]\n  memory: 16MiB\n  memory_overhead: {overhead}\n  stop_grace: 3s\n{start_timeout}{vmm}{workload}  budget:\n    cpu: {cpu}\n    memory: {mem}\n  container:\n    runtime_root: {runc}\n{container}{extra_offline}api:\n  socket: {sock}\nmetrics:\n  listen: {metrics}\npolicy:\n  paths: [{policy}]\n{extra}",
            cg = cgroup.name(),
            state = dir.path().join("state").display(),
            images = dir.path().join("images").display(),
            volumes = dir.path().join("volumes").display(),
            cpu = opts.budget_cpu,
            mem = opts.budget_memory,
            runc = dir.path().join("runc").display(),
            container = opts.container,
            extra_offline = opts.extra_offline,
            sock = socket.display(),
            metrics = metrics_addr.map_or("null".to_string(), |a| a.to_string()),
            policy = policy.display(),
            extra = opts.extra,
            overhead = opts.memory_overhead,
        );
        std::fs::write(&config, yaml).unwrap();
        let state_tmpfs = opts
            .state_tmpfs
            .map(|size| Tmpfs::mount(&dir.path().join("state"), size));
        let mut a = Self {
            state_tmpfs,
            dir,
            cgroup,
            child: None,
            socket,
            config,
            log,
            metrics_addr,
            opts,
        };
        a.spawn();
        a.wait_serving();
        a
    }

    /// The agent's `offline.image_roots` directory.
    pub fn images_dir(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// The agent's `offline.volume_roots` directory.
    pub fn volumes_dir(&self) -> PathBuf {
        self.dir.path().join("volumes")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts the agent process (again).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(colo_testkit::workspace_binary("colo-agent"));
        cmd.arg("--config")
            .arg(&self.config)
            .env("COLO_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start colo-agent"));
    }

    /// Waits until the socket answers NodeStatus.
    pub fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "colo-agent exited ({st}) before serving:\n{}",
                    self.log_text()
                );
            }
            let ok = rt.block_on(async {
                match connect(&self.socket).await {
                    Ok(mut c) => c.node_status(pb::NodeStatusRequest {}).await.is_ok(),
                    Err(_) => false,
                }
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "colo-agent did not serve:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `kill -9` the agent (its VMs live on).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            let st = c.wait().unwrap();
            assert_eq!(st.signal(), Some(9));
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on the agent process this test started.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn client(&self) -> AgentClient<Channel> {
        connect(&self.socket).await.expect("connect to the agent")
    }

    /// Job directories left under `<root>/offline` in any hierarchy.
    pub fn offline_leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for c in ["memory", "pids", "cpu", "cpuacct", "blkio"] {
            let d = self.cgroup.dir(c).join("offline");
            if let Ok(entries) = std::fs::read_dir(&d) {
                out.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
        }
        out
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.terminate();
        if std::thread::panicking() {
            eprintln!("---- colo-agent log ----\n{}", self.log_text());
        }
    }
}

/// Connects a gRPC client to a Unix socket.
pub async fn connect(socket: &Path) -> Result<AgentClient<Channel>, tonic::transport::Error> {
    let path = socket.to_path_buf();
    let ch = tonic::transport::Endpoint::from_static("http://agent.test")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await?;
    Ok(AgentClient::new(ch))
}

/// The workload guest ELF built by colo-vmm.
/// Runs `coloctl --socket <agent's socket> ARGS` and returns what it did.
pub fn coloctl(agent: &TestAgent, args: &[&str]) -> std::process::Output {
    Command::new(colo_testkit::workspace_binary("coloctl"))
        .arg("--socket")
        .arg(&agent.socket)
        .args(args)
        .output()
        .expect("coloctl runs")
}

/// The agent's audit lines (target `colo::audit`, message `audit`).
pub fn audit_lines(agent: &TestAgent) -> Vec<String> {
    agent
        .log_text()
        .lines()
        .filter(|l| l.contains(" audit op="))
        .map(str::to_string)
        .collect()
}

/// A command's stdout and stderr, one after the other.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn workload_guest() -> Option<PathBuf> {
    colo_vmm::workload_guest_path().ok()
}

/// A workload-guest job spec.
pub fn workload(key: &str, cpu_units: u64, hold_seconds: u64, exit_code: i32) -> pb::JobSpec {
    pb::JobSpec {
        idempotency_key: key.into(),
        sandbox: Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
            cpu_units,
            hold_seconds,
            exit_code,
            ..Default::default()
        })),
        vcpus: 1,
        memory_mib: 16,
        ..Default::default()
    }
}

/// Submits and returns the job.
pub async fn submit(c: &mut AgentClient<Channel>, spec: pb::JobSpec) -> pb::Job {
    c.submit_job(pb::SubmitJobRequest { spec: Some(spec) })
        .await
        .expect("submit")
        .into_inner()
        .job
        .expect("job")
}

/// Watches a job to its end and returns the final state.
pub async fn wait_end(c: &mut AgentClient<Channel>, id: &str, limit: Duration) -> pb::Job {
    let fut = async {
        let mut s = c
            .watch_job(pb::WatchJobRequest {
                id: id.into(),
                serial: false,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut last = None;
        while let Some(ev) = s.message().await.expect("watch stream") {
            if let Some(pb::job_event::Event::State(j)) = ev.event {
                last = Some(j);
            }
        }
        last.expect("a state")
    };
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("job {id} did not end within {limit:?}"))
}

/// Polls GetJob until `pred` holds.
pub async fn wait_for(
    c: &mut AgentClient<Channel>,
    id: &str,
    limit: Duration,
    pred: impl Fn(&pb::Job) -> bool,
) -> pb::Job {
    let deadline = Instant::now() + limit;
    loop {
        let j = c
            .get_job(pb::GetJobRequest { id: id.into() })
            .await
            .expect("get")
            .into_inner();
        if pred(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} stuck in {:?}", j);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn state(j: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(j.state).unwrap()
}

pub fn reason(j: &pb::Job) -> pb::EndReason {
    pb::EndReason::try_from(j.end_reason).unwrap()
}
