//! The start, as a list of small steps: check the arguments and files (bad input → status 64
//! before anything runs, as colo-vmm), open the serial output, bind the control socket, start
//! QEMU (stopped) and its output copies, connect QMP, find the vCPU threads, serve the control
//! socket, print the `started` line. The guest itself starts later (`main::wait`).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::RunArgs;
use crate::control;
use crate::outcome::Outcome;
use crate::output::{Log, Serial};
use crate::qemu;
use crate::qmp::Qmp;
use crate::signals;
use crate::vm::{Ending, Vm, VmParts};

/// How long QEMU may take to open its QMP socket.
const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to look for QEMU's vCPU threads by name when QMP does not name them.
const VCPU_SEARCH: Duration = Duration::from_secs(10);

/// QEMU, started and under control.
#[derive(Debug)]
pub struct Running {
    /// QEMU's process.
    pub child: Child,
    /// The VM.
    pub vm: Arc<Vm>,
    _files: Files,
}

/// Starts QEMU for `a`; the outcome of a failed start is the error.
pub fn start(
    a: &RunArgs,
    log: &Arc<Log>,
    ending: &Arc<Ending>,
    started: Instant,
) -> Result<Running, Outcome> {
    for w in a.check().map_err(Outcome::bad_input)? {
        log.say(&format!("warning: {w}"));
    }
    check_files(a).map_err(Outcome::bad_input)?;
    let acpi = qemu::Acpi::for_kernel(&a.kernel).map_err(Outcome::bad_input)?;
    let serial = Serial::open(&a.serial, a.log_limit)
        .map_err(|e| Outcome::bad_input(format!("--serial {}: {e}", a.serial)))?;
    let mut files = Files::default();
    let listener = match &a.control_socket {
        Some(path) => {
            let l = control::bind(path).map_err(Outcome::bad_input)?;
            files.remove.push(path.clone());
            Some(l)
        }
        None => None,
    };
    let dir = files
        .private_dir()
        .map_err(|e| Outcome::vmm_error(format!("cannot make a private directory for QMP: {e}")))?;
    let qmp_path = dir.join("qmp.sock");
    signals::watch(ending.clone())
        .map_err(|e| Outcome::vmm_error(format!("cannot start the signal thread: {e}")))?;

    let args = qemu::command_line(a, &qmp_path, qemu::host_tsc_khz(), acpi);
    let mut child = qemu::spawn(&args).map_err(|e| {
        Outcome::bad_input(format!(
            "cannot start {}: {e} (install qemu-system-x86, or name QEMU in COLO_VMM_STANDIN_QEMU)",
            qemu::binary().to_string_lossy()
        ))
    })?;
    ending.set_qemu(Some(child.id()));
    files.remove.extend(a.channel.iter().cloned());
    if let Some(err) = child.stderr.take() {
        log.pump_qemu_messages(err);
    }
    if let Some(out) = child.stdout.take()
        && let Err(e) = serial.pump(out, log)
    {
        return Err(abandon(
            child,
            ending,
            Outcome::vmm_error(format!("serial thread: {e}")),
        ));
    }

    let pid = child.id();
    let mut qmp = match Qmp::connect(&qmp_path, started + QMP_TIMEOUT, || !exited_unreaped(pid)) {
        Ok(q) => q,
        Err(e) => {
            // Give QEMU's last words a moment to reach the log.
            std::thread::sleep(Duration::from_millis(200));
            let said = log.qemu_tail();
            let why = if said.is_empty() { e.to_string() } else { said };
            return Err(abandon(
                child,
                ending,
                Outcome::bad_input(format!("QEMU did not start: {why}")),
            ));
        }
    };
    let vcpu_tids = vcpu_threads(&mut qmp, pid, log);
    let vm = Arc::new(Vm::new(VmParts {
        qmp,
        ending: ending.clone(),
        log: log.clone(),
        qemu_pid: pid,
        started,
        memory_mib: a.memory_mib,
        disks: a.disks.iter().map(|d| d.path.clone()).collect(),
        vcpu_tids: vcpu_tids.clone(),
    }));
    if let Some(l) = listener
        && let Err(e) = control::serve(l, vm.clone())
    {
        return Err(abandon(
            child,
            ending,
            Outcome::vmm_error(format!("control thread: {e}")),
        ));
    }
    let tids: Vec<String> = vcpu_tids.iter().map(u32::to_string).collect();
    let line = format!(
        "colo-vmm: started pid={} vcpu_tids={} io_tid=-",
        std::process::id(),
        tids.join(",")
    );
    println!("{line}");
    log.file_line(&line);
    log.say(&format!(
        "QEMU pid={pid} runs the guest under TCG (a test-only stand-in for colo-vmm: no jail, \
         no IO limits)"
    ));
    match &a.channel {
        None => vm
            .release_hold()
            .map_err(|e| Outcome::vmm_error(format!("cannot start the guest: {e}")))
            .map_err(|o| abandon_ref(&mut child, ending, o))?,
        Some(c) => log.say(&format!(
            "the guest starts once a client connects to the channel {}",
            c.display()
        )),
    }
    Ok(Running {
        child,
        vm,
        _files: files,
    })
}

/// Refuses a kernel, initrd or disk the stand-in cannot open, naming the flag and the path.
fn check_files(a: &RunArgs) -> Result<(), String> {
    let open = |flag: &str, path: &Path, write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map(drop)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    open("--kernel", &a.kernel, false)?;
    if let Some(i) = &a.initrd {
        open("--initrd", i, false)?;
    }
    for d in &a.disks {
        open("--disk", &d.path, !d.read_only)?;
    }
    Ok(())
}

/// QEMU's vCPU threads, vCPU 0 first: from QMP `query-cpus-fast`, else the threads named
/// `CPU <n>/TCG` (or `ALL CPUs/TCG`, one thread for all), else QEMU's main thread.
fn vcpu_threads(qmp: &mut Qmp, pid: u32, log: &Log) -> Vec<u32> {
    let mut tids: Vec<(u64, u32)> = qmp
        .execute("query-cpus-fast", None)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let tid = u32::try_from(c["thread-id"].as_u64()?).ok()?;
            Some((c["cpu-index"].as_u64()?, tid))
        })
        .collect();
    let deadline = Instant::now() + VCPU_SEARCH;
    while tids.is_empty() && Instant::now() < deadline {
        tids = tcg_threads_by_name(pid);
        if tids.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    tids.sort_unstable();
    let mut out: Vec<u32> = Vec::new();
    for (_, tid) in tids {
        if !out.contains(&tid) {
            out.push(tid);
        }
    }
    if out.is_empty() {
        log.say("warning: QEMU's vCPU threads not found; naming its main thread instead");
        out.push(pid);
    }
    out
}

fn tcg_threads_by_name(pid: u32) -> Vec<(u64, u32)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let index = comm.trim().strip_suffix("/TCG")?;
            let index = index
                .strip_prefix("CPU ")
                .map_or(Some(0), |n| n.parse().ok())?;
            Some((index, tid))
        })
        .collect()
}

/// Whether QEMU (our child `pid`) has exited, without reaping it (its pid stays ours).
pub fn exited_unreaped(pid: u32) -> bool {
    let pid: libc::id_t = pid;
    // SAFETY: an all-zero siginfo_t is valid; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the child unreaped.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is set by waitid for a child that changed state, and zero otherwise.
    r != 0 || unsafe { info.si_pid() } != 0
}

/// Ends a QEMU whose start failed; returns `why`.
fn abandon(mut child: Child, ending: &Ending, why: Outcome) -> Outcome {
    abandon_ref(&mut child, ending, why)
}

fn abandon_ref(child: &mut Child, ending: &Ending, why: Outcome) -> Outcome {
    ending.set_qemu(None);
    let _ = child.kill();
    let _ = child.wait();
    why
}

/// Files the run leaves behind, removed when it ends: the control and channel sockets, the
/// private directory of QEMU's QMP socket.
#[derive(Debug, Default)]
struct Files {
    remove: Vec<PathBuf>,
    dir: Option<PathBuf>,
}

impl Files {
    /// Makes a directory only this user may enter, for QEMU's QMP socket.
    fn private_dir(&mut self) -> std::io::Result<PathBuf> {
        let mut template = std::env::temp_dir()
            .join("colo-vmm-standin.XXXXXX")
            .into_os_string()
            .into_encoded_bytes();
        template.push(0);
        // SAFETY: `template` is a writable NUL-terminated buffer that mkdtemp fills in place.
        let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        template.pop();
        // SAFETY: the bytes came from an OsString and mkdtemp replaced ASCII X's with ASCII.
        let dir =
            PathBuf::from(unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(template) });
        self.dir = Some(dir.clone());
        Ok(dir)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for p in &self.remove {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
