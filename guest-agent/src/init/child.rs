//! The job's process: started from a [`RunSpec`] with its stdout and stderr on non-blocking
//! pipes, in a process group of its own (signals from the host go to the whole group), with a
//! pidfd that becomes readable when it exits.
//!
//! Resource limits are set in the child before it drops to the job's uid and gid, so a limit
//! may be raised above the guest's defaults. As the guest's PID 1 the init also reaps orphans
//! ([`Reaper::All`]); tests on a host wait for their own child only ([`Reaper::Own`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};

use colo_guest_agent::{ExitStatus, RunSpec};

/// Errors of starting and watching the job.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The command could not be started.
    #[error("cannot start {path}: {source}")]
    Spawn {
        /// The command.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// A system call about the running job failed.
    #[error("{call} failed for the job (pid {pid}): {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The job's pid.
        pid: i32,
        /// The cause.
        source: io::Error,
    },
}

/// Whose exit statuses the init collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaper {
    /// Every child of the process (PID 1: orphans are re-parented to it).
    All,
    /// The job's process only.
    Own,
}

/// The running job.
#[derive(Debug)]
pub struct Job {
    pid: i32,
    /// Readable once the job's process has exited.
    pub pidfd: OwnedFd,
    /// The job's stdout, `None` once it reached end of file.
    pub stdout: Option<ChildStdout>,
    /// The job's stderr, `None` once it reached end of file.
    pub stderr: Option<ChildStderr>,
    status: Option<ExitStatus>,
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns; F_GETFL/F_SETFL touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Applies limits and identity in the forked child, before `exec`. Only async-signal-safe
/// calls: the parent may have threads (the tests do).
fn enter_job_identity(limits: &[(i32, u64, u64)], uid: u32, gid: u32) -> io::Result<()> {
    for &(resource, soft, hard) in limits {
        let rl = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `rl` is a valid rlimit on the stack; the resource number came from the
        // validated spec. The cast is to the C library's own type for the resource argument.
        if unsafe { libc::setrlimit(resource as _, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: plain identity system calls with a pointer to one gid on the stack.
    unsafe {
        if libc::getuid() == 0 && libc::setgroups(1, &gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Job {
    /// Starts the job. The caller has entered the job's root file system already.
    pub fn spawn(spec: &RunSpec) -> Result<Self, ChildError> {
        let spawn_err = |source| ChildError::Spawn {
            path: spec.path.clone(),
            source,
        };
        let mut cmd = Command::new(&spec.path);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().filter_map(|e| e.split_once('=')))
            .current_dir(&spec.workdir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let limits: Vec<(i32, u64, u64)> = spec
            .rlimits
            .iter()
            .map(|l| (i32::from(l.resource.linux()), l.soft, l.hard))
            .collect();
        let (uid, gid) = (spec.uid, spec.gid);
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // system calls (setrlimit, setgroups, setgid, setuid) on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || enter_job_identity(&limits, uid, gid));
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let sys = |call, source| ChildError::Sys { call, pid, source };
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(sys("pidfd_open", io::Error::last_os_error()));
        }
        let fd = i32::try_from(fd).map_err(|_| {
            sys(
                "pidfd_open",
                io::Error::other(format!("descriptor {fd} out of range")),
            )
        })?;
        // SAFETY: the descriptor (non-negative, checked above) was just returned to us and
        // nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        for fd in [
            stdout.as_ref().map(|s| s.as_raw_fd()),
            stderr.as_ref().map(|s| s.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            set_nonblocking(fd).map_err(|e| sys("fcntl(O_NONBLOCK)", e))?;
        }
        Ok(Self {
            pid,
            pidfd,
            stdout,
            stderr,
            status: None,
        })
    }

    /// The job's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// How the job ended, once [`Job::reap`] has seen it.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Sends `signal` (1–64, checked by the protocol) to the job's process group. A group that
    /// is gone already is not an error.
    pub fn signal(&self, signal: u32) -> Result<(), ChildError> {
        let sig = i32::try_from(signal).unwrap_or(0);
        // SAFETY: kill takes plain integers; a negative pid names the job's process group.
        if unsafe { libc::kill(-self.pid, sig) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(ChildError::Sys {
                    call: "kill",
                    pid: self.pid,
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// Collects exit statuses without blocking; records the job's own when it comes.
    pub fn reap(&mut self, reaper: Reaper) -> Result<(), ChildError> {
        let target = match reaper {
            Reaper::All => -1,
            Reaper::Own if self.status.is_some() => return Ok(()),
            Reaper::Own => self.pid,
        };
        loop {
            let mut raw = 0;
            // SAFETY: waitpid writes one int through a pointer to a local.
            let pid = unsafe { libc::waitpid(target, &mut raw, libc::WNOHANG) };
            if pid < 0 {
                let e = io::Error::last_os_error();
                // No children left at all.
                if e.raw_os_error() == Some(libc::ECHILD) {
                    return Ok(());
                }
                return Err(ChildError::Sys {
                    call: "waitpid",
                    pid: self.pid,
                    source: e,
                });
            }
            if pid == 0 {
                return Ok(());
            }
            if pid == self.pid {
                self.status = Some(decode_status(raw));
                if reaper == Reaper::Own {
                    return Ok(());
                }
            }
        }
    }
}

impl Drop for Job {
    /// A job dropped before it ended (the session failed) is killed with its process group.
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: kill and waitpid take plain integers and a pointer to a local.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
                let mut raw = 0;
                libc::waitpid(self.pid, &mut raw, 0);
            }
        }
    }
}

/// The job's status as the protocol says it.
fn decode_status(raw: i32) -> ExitStatus {
    if libc::WIFSIGNALED(raw) {
        ExitStatus::Signal(u8::try_from(libc::WTERMSIG(raw)).unwrap_or(u8::MAX))
    } else {
        ExitStatus::Code(u8::try_from(libc::WEXITSTATUS(raw) & 0xff).unwrap_or(u8::MAX))
    }
}

#[cfg(test)]
pub(crate) mod tests;
