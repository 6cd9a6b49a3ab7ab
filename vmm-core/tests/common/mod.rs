//! Helpers of the KVM integration tests: start `colo-vmm` as a child process, read its started
//! line, talk to its control socket.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use colo_vmm::ControlClient;

/// The `colo-vmm` binary of this build.
pub const VMM: &str = env!("CARGO_BIN_EXE_colo-vmm");

/// A `colo-vmm run` child with its files in a temporary directory.
pub struct Vm {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub pid: u32,
    pub vcpu_tids: Vec<u32>,
    stderr_lines: mpsc::Receiver<String>,
    pub stderr_seen: Vec<String>,
}

/// Options of [`Vm::start`].
#[derive(Default)]
pub struct VmArgs<'a> {
    pub cmdline: &'a str,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub extra: Vec<String>,
    /// Memory cgroup `cgroup.procs` file the child joins before exec (before guest memory).
    pub join_cgroup_procs: Option<PathBuf>,
    /// Kernel to boot instead of the workload guest.
    pub kernel: Option<PathBuf>,
}

impl Vm {
    /// Starts the workload guest with a control socket, serial file and exit record, and waits
    /// for the started line.
    pub fn start(args: VmArgs<'_>) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(VMM);
        cmd.arg("run")
            .arg("--kernel")
            .arg(
                args.kernel
                    .clone()
                    .unwrap_or_else(|| colo_vmm::workload_guest_path().unwrap()),
            )
            .arg("--cmdline")
            .arg(args.cmdline)
            .arg("--vcpus")
            .arg(args.vcpus.max(1).to_string())
            .arg("--memory-mib")
            .arg(
                if args.memory_mib == 0 {
                    128
                } else {
                    args.memory_mib
                }
                .to_string(),
            )
            .arg("--serial")
            .arg(dir.path().join("serial.log"))
            .arg("--control-socket")
            .arg(dir.path().join("ctl.sock"))
            .arg("--exit-record")
            .arg(dir.path().join("exit.json"))
            .args(&args.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(procs) = args.join_cgroup_procs.clone() {
            // SAFETY: the closure only writes a file (open/write/close), which is allowed
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || std::fs::write(&procs, std::process::id().to_string()));
            }
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut vm = Vm {
            pid: child.id(),
            child,
            dir,
            vcpu_tids: Vec::new(),
            stderr_lines: rx,
            stderr_seen: Vec::new(),
        };
        let line = vm
            .wait_stderr("colo-vmm: started ", Duration::from_secs(20))
            .expect("started line");
        vm.vcpu_tids = parse_started(&line, vm.pid);
        vm
    }

    /// Waits for a stderr line starting with `prefix`.
    pub fn wait_stderr(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.stderr_seen.iter().find(|l| l.starts_with(prefix)) {
            return Some(l.clone());
        }
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.stderr_lines.recv_timeout(left).ok()?;
            self.stderr_seen.push(line.clone());
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn control(&self) -> ControlClient {
        ControlClient::connect(self.path("ctl.sock")).unwrap()
    }

    pub fn serial(&self) -> String {
        std::fs::read_to_string(self.path("serial.log")).unwrap_or_default()
    }

    /// Waits for the VMM to end (at most `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "colo-vmm did not end within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `text` on the console while the guest makes progress: it fails when the
    /// console stays unchanged while the vCPUs run for `stall` of CPU time, or after `cap` of
    /// wall time in all. The window is the guest's own time, not the wall clock: a loaded host
    /// gives the vCPUs less CPU (and on KVM-PVM a Linux guest's kernel code runs through KVM's
    /// instruction emulator, with quiet stretches of ~17 s of CPU at boot), so a slow guest is
    /// told from a guest that spins without printing.
    pub fn wait_serial_progressing(
        &self,
        text: &str,
        stall: Duration,
        cap: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        let vcpu_ns = || -> u64 {
            self.vcpu_tids
                .iter()
                .map(|t| try_thread_cpu_ns(self.pid, *t).unwrap_or(0))
                .sum()
        };
        let mut seen = 0usize;
        let mut cpu_at_change = vcpu_ns();
        loop {
            let serial = self.serial();
            if serial.contains(text) {
                return Ok(());
            }
            let cpu = vcpu_ns();
            if serial.len() != seen {
                seen = serial.len();
                cpu_at_change = cpu;
            }
            let quiet = Duration::from_nanos(cpu.saturating_sub(cpu_at_change));
            if quiet >= stall {
                return Err(format!(
                    "the console did not change while the vCPUs ran for {quiet:?} ({seen} bytes after {:.0} s)",
                    start.elapsed().as_secs_f64()
                ));
            }
            if start.elapsed() >= cap {
                return Err(format!(
                    "not there after {cap:?} ({seen} bytes; vCPU time {:?})",
                    Duration::from_nanos(cpu)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_serial(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.serial().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `colo-vmm: started pid=P vcpu_tids=a,b io_tid=T|-`, checking the pid.
pub fn parse_started(line: &str, pid: u32) -> Vec<u32> {
    let mut tids = Vec::new();
    let mut seen_pid = None;
    for word in line.split_whitespace() {
        if let Some(p) = word.strip_prefix("pid=") {
            seen_pid = p.parse::<u32>().ok();
        }
        if let Some(t) = word.strip_prefix("vcpu_tids=") {
            tids = t.split(',').map(|x| x.parse().unwrap()).collect();
        }
    }
    assert_eq!(seen_pid, Some(pid), "{line}");
    let io = line.rsplit("io_tid=").next().unwrap_or("");
    assert!(io == "-" || io.parse::<u32>().is_ok(), "{line}");
    tids
}

/// CPU time of a thread from `/proc/<pid>/task/<tid>/schedstat`, ns.
pub fn thread_cpu_ns(pid: u32, tid: u32) -> u64 {
    try_thread_cpu_ns(pid, tid).expect("the thread's schedstat")
}

/// As [`thread_cpu_ns`], `None` once the thread is gone.
pub fn try_thread_cpu_ns(pid: u32, tid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time plus run-queue wait of a thread (the first two fields of its schedstat), ns: the
/// time it wanted a CPU, whatever the host's load gave it.
pub fn thread_wanted_ns(pid: u32, tid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .expect("the thread's schedstat");
    text.split_whitespace()
        .take(2)
        .map(|v| v.parse::<u64>().expect("a schedstat number"))
        .sum()
}

/// Whether the test may run: KVM usable (and root for cgroups when asked).
pub fn can_run(test: &str, needs_root: bool) -> bool {
    colo_testkit::kvm_or_skip(test) && (!needs_root || colo_testkit::root_or_skip(test))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
