//! The per-job container monitor (`colo-monitor`), as conmon is for Podman: a small process the
//! agent starts in the job's cgroup, which outlives the agent and is the container's parent.
//!
//! 1. It becomes a child subreaper, so the container's init (forked by the runtime, which then
//!    exits) is re-parented to it, shields itself from the OOM killer, reads the job's OOM-kill
//!    counter, and runs `<runtime> run --detach` (create and start in one runtime process: the
//!    runtime is a program started once per job, not twice) with its stdout and stderr on a
//!    pipe the monitor reads.
//! 2. Once the runtime has returned, the container runs: the monitor prints
//!    `colo-monitor: started pid=<monitor> container_pid=<init>` on its stdout (the agent waits
//!    for that line, and reads it again after a restart).
//! 3. It copies the container's output into the job's console file, bounded by `--log-limit`
//!    (the newest half kept), reaps the init and whatever the kernel re-parents to it, then writes
//!    the exit record ([`ContainerExit`]) and deletes the container (its runtime state and the
//!    cgroups the runtime made).
//!
//! SIGTERM, SIGINT and SIGHUP sent to the monitor are passed on to the container's init, so the
//! container is never left without its monitor by a stray signal.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use colo_oci::runtime::OciRuntime;
use colo_vmm::CappedFile;

use super::exit::ContainerExit;
use crate::jobs::launch::pipe_cloexec;
use crate::jobs::model::now_ms;
use crate::jobs::procinfo;

/// How long `<runtime> run --detach` may take unless the agent says otherwise.
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The prefix of the line the monitor prints once the container runs.
pub const STARTED: &str = "colo-monitor: started ";

/// The monitor's settings (its command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorArgs {
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// The runtime's state root (`--root`).
    pub root: PathBuf,
    /// The container id.
    pub id: String,
    /// The bundle directory (holds `config.json`).
    pub bundle: PathBuf,
    /// Where the container's stdout and stderr go.
    pub console: PathBuf,
    /// Bytes the console file and its older half may hold together.
    pub log_limit: u64,
    /// Where the exit record goes.
    pub exit_record: PathBuf,
    /// A cgroup file with an `oom_kill N` line (v1 `memory.oom_control`, v2 `memory.events`).
    pub oom_counter: Option<PathBuf>,
    /// How long `<runtime> run --detach` (creating and starting the container) may take.
    pub create_timeout: Duration,
    /// The job's staged mounts, unmounted once the container has ended.
    pub mounts: Option<PathBuf>,
}

impl MonitorArgs {
    /// The command line of these settings (without the program name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut kv = |k: &str, v: OsString| {
            a.push(k.into());
            a.push(v);
        };
        kv("--runtime", self.runtime.clone().into());
        kv("--root", self.root.clone().into());
        kv("--id", self.id.clone().into());
        kv("--bundle", self.bundle.clone().into());
        kv("--console", self.console.clone().into());
        kv("--log-limit", self.log_limit.to_string().into());
        kv("--exit-record", self.exit_record.clone().into());
        if let Some(c) = &self.oom_counter {
            kv("--oom-counter", c.clone().into());
        }
        kv(
            "--create-timeout-ms",
            self.create_timeout.as_millis().to_string().into(),
        );
        if let Some(m) = &self.mounts {
            kv("--mounts", m.clone().into());
        }
        a
    }

    /// Parses [`Self::to_args`]'s form.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut m = Self {
            runtime: PathBuf::new(),
            root: PathBuf::new(),
            id: String::new(),
            bundle: PathBuf::new(),
            console: PathBuf::new(),
            log_limit: 0,
            exit_record: PathBuf::new(),
            oom_counter: None,
            create_timeout: DEFAULT_CREATE_TIMEOUT,
            mounts: None,
        };
        let mut it = args.into_iter();
        while let Some(k) = it.next() {
            let k = k.to_string_lossy().into_owned();
            let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
            match k.as_str() {
                "--runtime" => m.runtime = v.into(),
                "--root" => m.root = v.into(),
                "--id" => m.id = v.to_string_lossy().into_owned(),
                "--bundle" => m.bundle = v.into(),
                "--console" => m.console = v.into(),
                "--log-limit" => {
                    m.log_limit = v
                        .to_string_lossy()
                        .parse()
                        .map_err(|_| format!("--log-limit {v:?} is not a number of bytes"))?
                }
                "--exit-record" => m.exit_record = v.into(),
                "--oom-counter" => m.oom_counter = Some(v.into()),
                "--mounts" => m.mounts = Some(v.into()),
                "--create-timeout-ms" => {
                    let ms: u64 = v.to_string_lossy().parse().map_err(|_| {
                        format!("--create-timeout-ms {v:?} is not a number of milliseconds")
                    })?;
                    m.create_timeout = Duration::from_millis(ms.clamp(1_000, 3_600_000));
                }
                other => return Err(format!("unknown option {other}")),
            }
        }
        for (name, empty) in [
            ("--runtime", m.runtime.as_os_str().is_empty()),
            ("--root", m.root.as_os_str().is_empty()),
            ("--id", m.id.is_empty()),
            ("--bundle", m.bundle.as_os_str().is_empty()),
            ("--console", m.console.as_os_str().is_empty()),
            ("--exit-record", m.exit_record.as_os_str().is_empty()),
        ] {
            if empty {
                return Err(format!("{name} is required"));
            }
        }
        Ok(m)
    }
}

/// Parses a `started` line: (monitor pid, container init pid).
pub fn parse_started(output: &str) -> Option<(u32, u32)> {
    let line = output
        .lines()
        .find_map(|l| l.find(STARTED).map(|i| &l[i + STARTED.len()..]))?;
    let mut pid = None;
    let mut init = None;
    for kv in line.split_whitespace() {
        match kv.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("container_pid", v)) => init = v.parse().ok(),
            _ => {}
        }
    }
    Some((pid?, init?))
}

/// Reads the `oom_kill N` count of a cgroup file (0 when absent or unreadable).
pub fn oom_kills(file: Option<&Path>) -> u64 {
    let Some(f) = file else { return 0 };
    std::fs::read_to_string(f)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The container's init, once known (for the signal handler).
static INIT_PID: AtomicI32 = AtomicI32::new(0);
/// A stop signal arrived before the init was known.
static STOP_EARLY: AtomicI32 = AtomicI32::new(0);
/// The container ran (the handler may forward signals).
static RUNNING: AtomicBool = AtomicBool::new(false);

extern "C" fn forward(sig: libc::c_int) {
    let init = INIT_PID.load(Ordering::SeqCst);
    if init > 0 && RUNNING.load(Ordering::SeqCst) {
        // SAFETY: kill(2) is async-signal-safe; `init` is our child (re-parented to us), so
        // its pid cannot be reused before we reap it.
        unsafe { libc::kill(init, sig) };
    } else {
        STOP_EARLY.store(sig, Ordering::SeqCst);
    }
}

/// Runs the monitor to the container's end; returns the monitor's exit status (0 once the exit
/// record is written, whatever the container did).
pub fn run(args: &MonitorArgs) -> i32 {
    let me = std::process::id();
    let record = |exit: ContainerExit| -> i32 {
        match exit.write(&args.exit_record) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!(
                    "colo-monitor: cannot write {}: {e}",
                    args.exit_record.display()
                );
                1
            }
        }
    };
    let failed = |message: String| ContainerExit {
        exit_code: 127,
        signal: None,
        oom_killed: false,
        failed_to_start: true,
        message,
        ended_unix_ms: now_ms(),
        monitor_pid: me,
    };
    // The monitor shares the job's memory limit with the container: the OOM killer must take a
    // process of the container, never the monitor that records how the job ended. The runtime
    // inherits the shield; the bundle's `process.oomScoreAdj` gives the container its score.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        eprintln!("colo-monitor: cannot shield itself from the OOM killer: {e}");
    }
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and affects only this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return record(failed(format!("cannot become a child subreaper: {e}")));
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs a handler that only does async-signal-safe work (atomics, kill).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
    let rt = OciRuntime::at(&args.runtime, &args.root);
    let (read_end, write_end) = match pipe_cloexec() {
        Ok(p) => p,
        Err(e) => return record(failed(format!("cannot make the output pipe: {e}"))),
    };
    let pid_file = args.bundle.join("init.pid");
    let runtime_log = args.bundle.join("runtime.log");
    let _ = std::fs::remove_file(&pid_file);
    // Read before the container runs, so that an OOM kill at its very start still counts.
    let oom_before = oom_kills(args.oom_counter.as_deref());
    let started = run_detached(&rt, args, &pid_file, &runtime_log, write_end);
    let init = match started.and_then(|()| read_pid(&pid_file)) {
        Ok(p) => p,
        Err(e) => {
            let _ = rt.delete(&args.id);
            // A runtime stopped half-way leaves its init process behind, unknown to its state
            // (so `delete` cannot find it); as the subreaper, the monitor has inherited it.
            kill_children();
            unstage(args);
            return record(failed(format!("{e}{}", runtime_said(&runtime_log))));
        }
    };
    INIT_PID.store(init, Ordering::SeqCst);
    let pump = {
        let console = args.console.clone();
        let limit = args.log_limit;
        std::thread::Builder::new()
            .name("colo-monitor-io".into())
            .spawn(move || copy_output(read_end, &console, limit))
    };
    RUNNING.store(true, Ordering::SeqCst);
    println!("{STARTED}pid={me} container_pid={init}");
    let early = STOP_EARLY.swap(0, Ordering::SeqCst);
    if early != 0 {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(init, early) };
    }
    let status = reap_all(init);
    if let Ok(handle) = pump {
        // Every writer of the pipe was in the container, and all of it has ended: the copy
        // reaches end of file at once. Bounded all the same.
        let until = Instant::now() + Duration::from_secs(2);
        while !handle.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
    let oom_killed = oom_kills(args.oom_counter.as_deref()) > oom_before;
    let (exit_code, signal, message) = match status {
        Some(Ended::Exited(c)) => (c, None, format!("the container exited with code {c}")),
        Some(Ended::Signaled(s)) => (
            128 + s,
            Some(s),
            format!("the container's init was killed by signal {s}"),
        ),
        None => (
            255,
            None,
            "the container's init vanished without a status".to_string(),
        ),
    };
    let code = record(ContainerExit {
        exit_code,
        signal,
        oom_killed,
        failed_to_start: false,
        message,
        ended_unix_ms: now_ms(),
        monitor_pid: me,
    });
    if let Err(e) = rt.delete(&args.id) {
        eprintln!("colo-monitor: {e}");
    }
    unstage(args);
    code
}

/// Unmounts the job's staged volumes (the container that used them has ended).
fn unstage(args: &MonitorArgs) {
    if let Some(dir) = &args.mounts
        && let Err(e) = super::mounts::unstage(dir)
    {
        eprintln!("colo-monitor: cannot unmount {}: {e}", dir.display());
    }
}

/// Kills and reaps every remaining child of the monitor (after a failed start: the runtime's
/// half-made init, which the monitor inherited as subreaper).
fn kill_children() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if procinfo::parent(pid).is_ok_and(|p| p == me) {
            let pid = pid as i32;
            // SAFETY: kill(2) on a child of this process (its parent is us, so the pid cannot
            // have been reused by another process before we reap it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let mut status = 0;
            // SAFETY: waitpid(2) on our own child with a status we own.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
    }
}

/// Runs `<runtime> --log L run --detach` (one runtime process creates and starts the
/// container), its stdout and stderr (passed on to the container) on `out`.
fn run_detached(
    rt: &OciRuntime,
    args: &MonitorArgs,
    pid_file: &Path,
    runtime_log: &Path,
    out: OwnedFd,
) -> Result<(), String> {
    let mut argv: Vec<OsString> = vec!["--log".into(), runtime_log.into()];
    argv.extend(rt.run_detached_args(&args.id, &args.bundle, pid_file));
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(rt.binary())
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", rt.binary().display()))?;
    // The Command's copies of the pipe are closed once spawned; the container's init keeps its
    // own, so the monitor's reader sees end of file when the container has ended.
    let deadline = Instant::now() + args.create_timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => {
                return Err(format!(
                    "`{} run --detach` failed ({st})",
                    rt.version_or_name()
                ));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{} run --detach` did not finish",
                    rt.version_or_name()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The last line the runtime logged (its error), as `: <message>`.
fn runtime_said(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return String::new();
    };
    // runc logs `time="…" level=error msg="…"`; crun plain text.
    let msg = line
        .split_once("msg=\"")
        .map_or(line, |(_, m)| m.trim_end_matches('"'));
    let mut msg = msg.to_string();
    msg.truncate(msg.floor_char_boundary(1024));
    format!(": {msg}")
}

fn read_pid(f: &Path) -> Result<i32, String> {
    let text =
        std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{} holds no pid: {text:?}", f.display()))
}

/// Bytes the output copy reads at a time.
const COPY_BUFFER: usize = 8 * 1024;

/// Copies the container's output into the console file until end of file.
fn copy_output(read_end: OwnedFd, console: &Path, limit: u64) {
    let mut file = match CappedFile::open(console, Some(limit)) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("colo-monitor: cannot open {}: {e}", console.display());
            None
        }
    };
    let mut pipe = std::fs::File::from(read_end);
    // Small on purpose: every page of it is private memory of each of the node's monitors, and
    // a read returns what the pipe holds, so a larger buffer only saves syscalls on chatty jobs.
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(f) = file.as_mut() {
                    // Best effort, like all job output: a full disk never stops the container.
                    let _ = f.write(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// How the init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// Reaps children until none is left; returns how `init` ended.
fn reap_all(init: i32) -> Option<Ended> {
    let mut ended = None;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with an out-pointer to a local.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => break, // ECHILD: nothing left
            }
        }
        if pid == init {
            ended = if libc::WIFEXITED(status) {
                Some(Ended::Exited(libc::WEXITSTATUS(status)))
            } else if libc::WIFSIGNALED(status) {
                Some(Ended::Signaled(libc::WTERMSIG(status)))
            } else {
                None
            };
        }
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> MonitorArgs {
        MonitorArgs {
            runtime: "/usr/sbin/runc".into(),
            root: "/run/colo/runc".into(),
            id: "j1".into(),
            bundle: "/s/jobs/j1/bundle".into(),
            console: "/s/jobs/j1/serial.log".into(),
            log_limit: 65536,
            exit_record: "/s/jobs/j1/exit.json".into(),
            oom_counter: Some("/sys/fs/cgroup/memory/colo/offline/j1/memory.oom_control".into()),
            create_timeout: Duration::from_secs(120),
            mounts: Some("/s/mounts/j1".into()),
        }
    }

    #[test]
    fn the_command_line_round_trips() {
        let a = args();
        assert_eq!(MonitorArgs::parse(a.to_args()).unwrap(), a);
        let mut b = a.clone();
        b.oom_counter = None;
        b.mounts = None;
        assert_eq!(MonitorArgs::parse(b.to_args()).unwrap(), b);
        let e = MonitorArgs::parse(vec!["--id".into(), "x".into()]).unwrap_err();
        assert!(e.contains("--runtime is required"), "{e}");
        let e = MonitorArgs::parse(vec!["--bogus".into(), "x".into()]).unwrap_err();
        assert!(e.contains("--bogus"), "{e}");
        let e = MonitorArgs::parse(vec!["--id".into()]).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
        let e = MonitorArgs::parse(vec!["--create-timeout-ms".into(), "soon".into()]).unwrap_err();
        assert!(e.contains("not a number of milliseconds"), "{e}");
    }

    #[test]
    fn parses_the_started_line() {
        assert_eq!(
            parse_started("x\ncolo-monitor: started pid=5 container_pid=6\n"),
            Some((5, 6))
        );
        assert_eq!(parse_started("colo-monitor: started pid=5"), None);
        assert_eq!(parse_started(""), None);
    }

    #[test]
    fn reads_the_oom_kill_count_of_both_cgroup_versions() {
        let d = tempfile::tempdir().unwrap();
        let v1 = d.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(oom_kills(Some(&v1)), 3);
        let v2 = d.path().join("memory.events");
        std::fs::write(
            &v2,
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(oom_kills(Some(&v2)), 2);
        assert_eq!(oom_kills(Some(&d.path().join("absent"))), 0);
        assert_eq!(oom_kills(None), 0);
    }

    #[test]
    fn the_runtime_error_is_taken_from_its_log() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("runtime.log");
        std::fs::write(
            &log,
            "time=\"x\" level=warning msg=\"w\"\ntime=\"y\" level=error msg=\"runc create failed: no such file\"\n",
        )
        .unwrap();
        assert_eq!(runtime_said(&log), ": runc create failed: no such file");
        assert_eq!(runtime_said(&d.path().join("none")), "");
    }
}
