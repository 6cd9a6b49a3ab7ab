//! The jail (`colo-vmm run --jail-uid U --jail-gid G`): after the VMM has opened everything it
//! needs with the rights it was started with (`/dev/kvm`, the kernel, the disks, its output
//! files, the control socket) and before the guest runs its first instruction, the process
//!
//! 1. enters its own mount namespace whose root is an empty, read-only tmpfs holding only the
//!    directories the VMM still writes to (its output files' and control socket's directories,
//!    bind-mounted at the same paths, `nosuid,nodev,noexec`) — `/proc`, `/dev`, `/sys`, the
//!    host's files and binaries are gone (`pivot_root`, the old root detached);
//! 2. lowers its rlimits: no core dumps (guest memory stays out of them), no locked memory, a
//!    bounded number of open files and of threads;
//! 3. sets `no_new_privs`, empties its capability bounding set and its supplementary groups,
//!    and becomes uid `U`, gid `G` (all threads), which leaves it no capability at all.
//!
//! Then each thread installs its seccomp filter (see [`crate::seccomp`]).
//!
//! The steps run in the main thread while it is the only thread of the process: mount
//! namespaces are per thread, and threads started later inherit the jail.

mod mounts;

use std::path::{Path, PathBuf};

pub use mounts::build_root;

/// Most open files of a jailed VMM (its own descriptors plus control connections).
pub const MAX_OPEN_FILES: u64 = 512;
/// Threads a jailed VMM may start beyond one per vCPU (main, IO, spares).
pub const SPARE_THREADS: u64 = 8;

/// Who the VMM becomes and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    /// The uid it runs as (one per job, never 0).
    pub uid: u32,
    /// The gid it runs as (never 0).
    pub gid: u32,
    /// Absolute directories it still writes to, bind-mounted into its root at the same paths.
    pub writable: Vec<PathBuf>,
    /// Most threads of the uid (`RLIMIT_NPROC`).
    pub max_threads: u64,
}

/// Why the VMM could not jail itself.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// Uid or gid 0, or a relative path.
    #[error("{0}")]
    BadArgument(String),
    /// The process lacks the rights to build a jail.
    #[error(
        "{step} needs root (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID): {source}; start colo-vmm as root, or without --jail-uid/--jail-gid"
    )]
    NotPrivileged {
        /// The step.
        step: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A step failed.
    #[error("{step}: {source}")]
    Step {
        /// The step (and the path it worked on).
        step: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Credentials or capabilities are not what the jail set.
    #[error("the jail did not take: {0}")]
    Verify(String),
}

impl JailError {
    /// The error of `step` from `errno`: EPERM names the missing privilege.
    pub(crate) fn last_os(step: impl Into<String>) -> Self {
        let source = std::io::Error::last_os_error();
        let step = step.into();
        if source.raw_os_error() == Some(libc::EPERM) {
            Self::NotPrivileged { step, source }
        } else {
            Self::Step { step, source }
        }
    }
}

/// Checks `jail`'s arguments: non-root ids, absolute directories.
pub fn check(jail: &Jail) -> Result<(), JailError> {
    if jail.uid == 0 || jail.gid == 0 {
        return Err(JailError::BadArgument(format!(
            "--jail-uid {} --jail-gid {}: the jail's ids must not be 0 (root); give the job's own unprivileged ids",
            jail.uid, jail.gid
        )));
    }
    if let Some(p) = jail.writable.iter().find(|p| !p.is_absolute()) {
        return Err(JailError::BadArgument(format!(
            "{} is relative: with --jail-uid, give --serial, --log, --control-socket and --exit-record as absolute paths",
            p.display()
        )));
    }
    Ok(())
}

/// Builds the jail around the calling process (see the module docs). Call it from the only
/// thread of the process.
pub fn enter(jail: &Jail) -> Result<(), JailError> {
    check(jail)?;
    build_root(&jail.writable)?;
    limit_resources(jail)?;
    drop_privileges(jail.uid, jail.gid)?;
    verify(jail.uid, jail.gid)
}

fn set_rlimit(
    resource: libc::__rlimit_resource_t,
    name: &str,
    value: u64,
) -> Result<(), JailError> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads the struct we pass; no memory is retained.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(JailError::last_os(format!("setrlimit({name}, {value})")));
    }
    Ok(())
}

fn limit_resources(jail: &Jail) -> Result<(), JailError> {
    set_rlimit(libc::RLIMIT_CORE, "RLIMIT_CORE", 0)?;
    set_rlimit(libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", 0)?;
    set_rlimit(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", MAX_OPEN_FILES)?;
    set_rlimit(libc::RLIMIT_NPROC, "RLIMIT_NPROC", jail.max_threads.max(1))
}

fn drop_privileges(uid: u32, gid: u32) -> Result<(), JailError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(JailError::last_os("prctl(PR_SET_NO_NEW_PRIVS)"));
    }
    // The bounding set limits what any later execve could gain; empty it while CAP_SETPCAP is
    // still held. Capabilities the kernel does not know end the loop (EINVAL).
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(JailError::last_os(format!("prctl(PR_CAPBSET_DROP, {cap})")));
        }
    }
    // SAFETY: an empty group list; setgroups reads nothing through the null pointer.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(JailError::last_os("setgroups([])"));
    }
    // glibc applies set*id to every thread of the process.
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(JailError::last_os(format!("setresgid({gid})")));
    }
    // Leaving uid 0 clears the permitted, effective and ambient capability sets.
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(JailError::last_os(format!("setresuid({uid})")));
    }
    // Not ptrace-able or readable through /proc by other processes of the same uid.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    Ok(())
}

/// Reads back uid, gid and the capability sets.
fn verify(uid: u32, gid: u32) -> Result<(), JailError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: getresuid writes three integers we own.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    if [r, e, s] != [uid; 3] {
        return Err(JailError::Verify(format!(
            "uids are {r}/{e}/{s}, not {uid}"
        )));
    }
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: getresgid writes three integers we own.
    unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
    if [r, e, s] != [gid; 3] {
        return Err(JailError::Verify(format!(
            "gids are {r}/{e}/{s}, not {gid}"
        )));
    }
    let caps = capabilities()?;
    if caps != [0; 3] {
        return Err(JailError::Verify(format!(
            "capabilities left (effective, permitted, inheritable): {caps:x?}"
        )));
    }
    Ok(())
}

/// The calling thread's effective, permitted and inheritable capability sets (64 bits each).
pub fn capabilities() -> Result<[u64; 3], JailError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` entries (version 3 uses two) into memory we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(JailError::last_os("capget"));
    }
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    Ok([
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ])
}

/// The directory of `path`, for [`Jail::writable`].
pub fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests;
