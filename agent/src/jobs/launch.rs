//! Starting a VMM process inside its job cgroup, in its own session, so that every page it
//! allocates is charged to the job and it outlives the agent.
//!
//! * cgroup v2: `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)` — the child is born in the job's
//!   cgroup; between `clone3` and `execve` it only calls async-signal-safe functions (`dup2`,
//!   `setsid`, `sigprocmask`, `execve`, `write`, `_exit`) on data prepared beforehand. When the
//!   kernel or a seccomp filter refuses `clone3` (ENOSYS, EPERM, E2BIG, EINVAL), it falls back to
//!   the v1 method on the job's `cgroup.procs`.
//! * cgroup v1 (and the fallback): `fork` through `std::process::Command`, and in `pre_exec`
//!   the child writes `0` (meaning "me") into the job's `cgroup.procs` of every hierarchy,
//!   through descriptors opened before the fork, then calls `setsid`.
//!
//! Either way the process is in its cgroups before `execve`, so before the VMM allocates guest
//! memory. The caller gets a pidfd, which stays valid across pid reuse.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::host::cgroup::Placement;

/// Environment variables of the agent that its VMMs must not inherit (they belong to the
/// agent's own relation with systemd).
const STRIPPED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Errors starting a process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A file the launch needs could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program could not be started (fork, placement or exec failed).
    #[error("cannot start {program}: {source}")]
    Start {
        /// The program.
        program: PathBuf,
        /// The OS error (from the child when placement or exec failed).
        source: std::io::Error,
    },
    /// A pidfd could not be obtained.
    #[error("pidfd_open({pid}): {source} (colo needs Linux >= 5.3)")]
    Pidfd {
        /// The process.
        pid: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// An argument held a NUL byte.
    #[error("argument {0:?} holds a NUL byte")]
    Nul(OsString),
}

/// What to start and where.
#[derive(Debug)]
pub struct LaunchSpec<'a> {
    /// The program (absolute path).
    pub program: &'a Path,
    /// Its arguments (without argv\[0\]).
    pub args: &'a [OsString],
    /// Receives the child's stdout and stderr.
    pub output: &'a Path,
    /// The cgroups it must be born in.
    pub placement: &'a Placement,
    /// Descriptors the child inherits as fd 3, 4, ... in this order (the files a job names,
    /// opened by the agent beneath the operator's roots).
    pub inherit: &'a [OwnedFd],
}

/// The first descriptor number a child inherits `LaunchSpec::inherit` at.
pub const FIRST_INHERITED_FD: RawFd = 3;

/// Most descriptors a child inherits.
pub const MAX_INHERITED_FDS: usize = 32;

/// Descriptors are staged at or above this number before the fork, so that moving them to
/// 3, 4, ... in the child never overwrites one that is still to be moved.
const STAGING_FD: RawFd = 100;

/// Duplicates `fd` at or above [`STAGING_FD`], close-on-exec.
fn stage(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller keeps open; it returns a new
    // descriptor that we own.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, STAGING_FD) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Stages every inherited descriptor (see [`STAGING_FD`]).
fn stage_all(spec: &LaunchSpec<'_>) -> Result<Vec<OwnedFd>, SpawnError> {
    if spec.inherit.len() > MAX_INHERITED_FDS {
        return Err(start_error(
            spec,
            std::io::Error::from_raw_os_error(libc::EMFILE),
        ));
    }
    spec.inherit
        .iter()
        .map(|fd| stage(fd.as_raw_fd()).map_err(|e| start_error(spec, e)))
        .collect()
}

/// In the child: moves the staged descriptors to 3, 4, ... (dup2 clears close-on-exec on the
/// copy). Async-signal-safe: dup2 only, on numbers prepared before the fork.
fn move_inherited(staged: &[RawFd]) -> std::io::Result<()> {
    for (target, &fd) in (FIRST_INHERITED_FD..).zip(staged) {
        // SAFETY: dup2 on descriptors open in this process; `target` is below STAGING_FD, so
        // it is never one of the staged descriptors still to be moved.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How the child was placed into its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementMethod {
    /// `clone3(CLONE_INTO_CGROUP)`.
    CloneIntoCgroup,
    /// `pre_exec` writing into `cgroup.procs`.
    PreExecWrite,
}

/// A started process.
#[derive(Debug)]
pub struct Launched {
    /// Its pid.
    pub pid: u32,
    /// A pidfd referring to it.
    pub pidfd: OwnedFd,
    /// How it got into its cgroup.
    pub method: PlacementMethod,
}

/// Starts `spec.program` in its own session inside `spec.placement`, with stdin from
/// `/dev/null` and stdout and stderr appended to `spec.output`.
pub fn launch(spec: &LaunchSpec<'_>) -> Result<Launched, SpawnError> {
    let output = File::options()
        .create(true)
        .append(true)
        .open(spec.output)
        .map_err(|source| SpawnError::Open {
            path: spec.output.into(),
            source,
        })?;
    match spec.placement {
        Placement::V2 { dir } => match clone_into_cgroup(spec, dir, &output) {
            Ok(l) => Ok(l),
            Err(CloneError::Unsupported(errno)) => {
                tracing::info!(
                    errno,
                    "clone3(CLONE_INTO_CGROUP) unavailable; placing the VMM from pre_exec"
                );
                let procs = vec![dir.join("cgroup.procs")];
                fork_and_place(spec, &procs, &output)
            }
            Err(CloneError::Failed(e)) => Err(e),
        },
        Placement::V1 { procs_files } => fork_and_place(spec, procs_files, &output),
    }
}

fn start_error(spec: &LaunchSpec<'_>, source: std::io::Error) -> SpawnError {
    SpawnError::Start {
        program: spec.program.into(),
        source,
    }
}

fn fork_and_place(
    spec: &LaunchSpec<'_>,
    procs_files: &[PathBuf],
    output: &File,
) -> Result<Launched, SpawnError> {
    let mut procs = Vec::with_capacity(procs_files.len());
    for p in procs_files {
        let f = File::options()
            .write(true)
            .open(p)
            .map_err(|source| SpawnError::Open {
                path: p.clone(),
                source,
            })?;
        procs.push(f);
    }
    let fds: Vec<RawFd> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let staged = stage_all(spec)?;
    let staged_fds: Vec<RawFd> = staged.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = std::process::Command::new(spec.program);
    cmd.args(spec.args)
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone().map_err(|e| start_error(spec, e))?)
        .stderr(output.try_clone().map_err(|e| start_error(spec, e))?);
    for k in STRIPPED_ENV {
        cmd.env_remove(k);
    }
    // Runs in the child between fork and exec: only write(2) on descriptors opened before the
    // fork, setsid(2) and dup2(2), all async-signal-safe; it allocates nothing (the error path builds an
    // io::Error from an errno, which does not allocate).
    let place = move || {
        for &fd in &fds {
            // "0" moves the writing process itself.
            // SAFETY: fd is an open descriptor owned by the parent's `procs` vector, which
            // outlives the fork; the buffer is a static string.
            let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            if n != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // SAFETY: setsid has no preconditions; it fails only for a group leader, which a
        // freshly forked child is not.
        if unsafe { libc::setsid() } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Last: the placement descriptors above may sit where inherited ones go.
        move_inherited(&staged_fds)
    };
    // SAFETY: `place` is async-signal-safe as required of pre_exec closures (see above).
    unsafe {
        cmd.pre_exec(place);
    }
    let child = cmd.spawn().map_err(|e| start_error(spec, e))?;
    drop(staged);
    let pid = child.id();
    // The Child is dropped without waiting: the caller reaps it through the pidfd. Until then
    // it stays a zombie at worst, so its pid cannot be reused before pidfd_open below.
    drop(child);
    let pidfd = pidfd_open(pid)?;
    Ok(Launched {
        pid,
        pidfd,
        method: PlacementMethod::PreExecWrite,
    })
}

enum CloneError {
    /// clone3 or CLONE_INTO_CGROUP is not available: fall back.
    Unsupported(i32),
    Failed(SpawnError),
}

fn cstring(s: &OsStr) -> Result<CString, SpawnError> {
    CString::new(s.as_bytes()).map_err(|_| SpawnError::Nul(s.to_os_string()))
}

fn clone_into_cgroup(
    spec: &LaunchSpec<'_>,
    dir: &Path,
    output: &File,
) -> Result<Launched, CloneError> {
    use CloneError::Failed;
    // Everything the child touches is prepared here, before clone3.
    let program = cstring(spec.program.as_os_str()).map_err(Failed)?;
    let mut argv_c = vec![program.clone()];
    for a in spec.args {
        argv_c.push(cstring(a).map_err(Failed)?);
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut env_c = Vec::new();
    for (k, v) in std::env::vars_os() {
        if STRIPPED_ENV.iter().any(|s| OsStr::new(s) == k) {
            continue;
        }
        let mut kv = k.clone();
        kv.push("=");
        kv.push(&v);
        if let Ok(c) = CString::new(kv.as_bytes()) {
            env_c.push(c);
        }
    }
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    let open_err = |path: &Path, source| {
        Failed(SpawnError::Open {
            path: path.into(),
            source,
        })
    };
    let cgroup = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| open_err(dir, e))?;
    let devnull = File::open("/dev/null").map_err(|e| open_err(Path::new("/dev/null"), e))?;
    let (err_r, pipe_w) = pipe_cloexec().map_err(|e| Failed(start_error(spec, e)))?;
    // The error pipe is staged high too: moving the inherited descriptors must not cover it.
    // Only the staged copy may stay open: the parent reads the pipe until every writer closed.
    let err_w = stage(pipe_w.as_raw_fd()).map_err(|e| Failed(start_error(spec, e)))?;
    drop(pipe_w);
    let staged = stage_all(spec).map_err(Failed)?;
    let staged_fds: Vec<RawFd> = staged.iter().map(AsRawFd::as_raw_fd).collect();
    let out_fd = output.as_raw_fd();
    let in_fd = devnull.as_raw_fd();
    let err_fd = err_w.as_raw_fd();

    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone_args is a plain C struct; all-zero is its documented "no options" value.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = (libc::CLONE_PIDFD as u64) | CLONE_INTO_CGROUP;
    args.pidfd = (&raw mut pidfd) as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;

    // SAFETY: clone3 without CLONE_VM duplicates the address space like fork(2): the child
    // runs on a copy of this thread's stack and returns 0 here. The child branch below only
    // uses async-signal-safe system calls on memory prepared above (argv, envp, descriptors)
    // and never returns: it ends in execve or _exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if ret == 0 {
        // SAFETY: child side, async-signal-safe calls only, see above.
        unsafe {
            child_after_clone(
                in_fd,
                out_fd,
                err_fd,
                &staged_fds,
                program.as_ptr(),
                &argv,
                &envp,
            )
        }
    }
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        let errno = e.raw_os_error().unwrap_or(0);
        return Err(match errno {
            libc::ENOSYS | libc::EPERM | libc::E2BIG | libc::EINVAL => {
                CloneError::Unsupported(errno)
            }
            _ => Failed(start_error(spec, e)),
        });
    }
    let pid = u32::try_from(ret).unwrap_or(0);
    drop(err_w);
    drop(staged);
    // SAFETY: the kernel stored a new descriptor in `pidfd` for CLONE_PIDFD; we own it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The pipe closes on exec (EOF, success) or carries the child's errno (failure).
    let mut buf = [0u8; 4];
    let mut err_file = File::from(err_r);
    let n = read_full(&mut err_file, &mut buf);
    if n == 4 {
        let errno = i32::from_ne_bytes(buf);
        // The child has exited with 127; reap it.
        reap(&pidfd);
        return Err(Failed(start_error(
            spec,
            std::io::Error::from_raw_os_error(errno),
        )));
    }
    Ok(Launched {
        pid,
        pidfd,
        method: PlacementMethod::CloneIntoCgroup,
    })
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), not yet a u64 constant in libc.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The child's side of clone3: stdio, new session, default signal state, exec.
///
/// # Safety
/// Must only be called in the child right after clone3; every pointer must stay valid (they
/// point into the parent's copied memory).
unsafe fn child_after_clone(
    in_fd: RawFd,
    out_fd: RawFd,
    err_fd: RawFd,
    staged: &[RawFd],
    program: *const libc::c_char,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: async-signal-safe system calls on descriptors and pointers prepared by the parent.
    unsafe {
        let fail = |err_fd: RawFd| -> ! {
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(err_fd, bytes.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        if libc::dup2(in_fd, 0) < 0 || libc::dup2(out_fd, 1) < 0 || libc::dup2(out_fd, 2) < 0 {
            fail(err_fd);
        }
        if libc::setsid() < 0 {
            fail(err_fd);
        }
        if move_inherited(staged).is_err() {
            fail(err_fd);
        }
        // The agent's runtime may block signals or ignore SIGPIPE; the VMM starts clean.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execve(program, argv.as_ptr(), envp.as_ptr());
        fail(err_fd)
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    n
}

/// A pipe whose two ends close on exec: (read end, write end).
pub(crate) fn pipe_cloexec() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Opens a pidfd for `pid` (close-on-exec).
pub fn pidfd_open(pid: u32) -> Result<OwnedFd, SpawnError> {
    let pid_t = libc::pid_t::try_from(pid).map_err(|_| SpawnError::Pidfd {
        pid,
        source: std::io::Error::from_raw_os_error(libc::ESRCH),
    })?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_t, 0) };
    if fd < 0 {
        return Err(SpawnError::Pidfd {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    let fd = RawFd::try_from(fd).map_err(|_| SpawnError::Pidfd {
        pid,
        source: std::io::Error::from_raw_os_error(libc::EBADF),
    })?;
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process behind `pidfd` (never to a process that reused its pid).
pub fn pidfd_signal(pidfd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// How a child process ended, as `waitid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

/// Reaps the process behind `pidfd` if it is an exited child of this process; returns how it
/// ended. Returns None for a process that is not our child (adopted after a restart) or has
/// not exited.
pub fn reap(pidfd: &OwnedFd) -> Option<WaitStatus> {
    // SAFETY: siginfo_t is plain data; zeroed is a valid initial value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid(P_PIDFD) with a valid pidfd and an out-pointer to `info`.
    let r = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    // SAFETY: after a successful waitid the pid and status fields of `info` are valid.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if r < 0 || pid == 0 {
        return None;
    }
    match info.si_code {
        libc::CLD_EXITED => Some(WaitStatus::Exited(status)),
        _ => Some(WaitStatus::Signaled(status)),
    }
}

/// Waits until the process behind `pidfd` has exited (the pidfd turns readable).
pub async fn exited(pidfd: &OwnedFd) -> std::io::Result<()> {
    let borrowed = PidfdRef(pidfd.as_raw_fd());
    // SAFETY: the descriptor stays open and unchanged while `afd` lives: `afd` is local to this
    // function, which holds a borrow of the OwnedFd for its whole duration.
    let afd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(borrowed, tokio::io::Interest::READABLE)
    }?;
    let _guard = afd.readable().await?;
    Ok(())
}

/// A borrowed pidfd for AsyncFd (which must not close it).
struct PidfdRef(RawFd);

impl AsRawFd for PidfdRef {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// True when the process behind `pidfd` has exited (non-blocking).
pub fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd with a zero timeout.
    let r = unsafe { libc::poll(&raw mut p, 1, 0) };
    r > 0 && p.revents & libc::POLLIN != 0
}

#[cfg(test)]
mod tests;
