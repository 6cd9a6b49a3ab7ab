//! What the agent reads about processes from procfs: start times (so a reused pid is never
//! mistaken for a VMM), the boot id (so a record from before a reboot is never adopted) and
//! thread names (to find a VMM's vCPU and IO threads).

use std::fs;
use std::path::PathBuf;

/// Errors reading procfs.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process does not exist (any more).
    #[error("process {0} does not exist")]
    NoSuchProcess(u32),
    /// A procfs file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A procfs file did not have the expected format.
    #[error("cannot parse {path}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

/// Identifies one process across pid reuse: its pid, its start time in clock ticks since boot
/// (`/proc/<pid>/stat` field 22) and the boot it started in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` when the process was seen.
    pub boot_id: String,
}

impl ProcessIdentity {
    /// Reads the identity of the live process `pid`.
    pub fn of(pid: u32) -> Result<Self, ProcError> {
        Ok(Self {
            pid,
            start_ticks: start_ticks(pid)?,
            boot_id: boot_id()?,
        })
    }

    /// True when `pid` is still alive and is the very process this identity was taken from
    /// (same boot, same start time). A reused pid or a record from an earlier boot is not.
    pub fn is_alive(&self) -> bool {
        match (boot_id(), start_ticks(self.pid)) {
            (Ok(boot), Ok(ticks)) => boot == self.boot_id && ticks == self.start_ticks,
            _ => false,
        }
    }
}

/// Reads `/proc/<pid>/stat`; a missing file means the process does not exist.
fn read_stat(pid: u32) -> Result<(PathBuf, String), ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    match fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(ProcError::NoSuchProcess(pid))
        }
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

/// Field `n` of a `/proc/<pid>/stat` line, numbered as proc(5) numbers them (3 is the state).
/// The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so
/// fields are counted after the last `)`.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(n.checked_sub(3)?)
}

/// Field `n` of a stat line as a number; `what` names the field in the error.
fn stat_number(path: &std::path::Path, stat: &str, n: usize, what: &str) -> Result<u64, ProcError> {
    stat_field(stat, n)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| ProcError::Parse {
            path: path.to_path_buf(),
            why: format!("field {n} ({what}) missing or not a number"),
        })
}

/// The process's start time in clock ticks since boot: field 22 of `/proc/<pid>/stat`.
pub fn start_ticks(pid: u32) -> Result<u64, ProcError> {
    let (path, text) = read_stat(pid)?;
    stat_number(&path, &text, 22, "starttime")
}

/// The parent's pid: field 4 of `/proc/<pid>/stat`.
pub fn parent(pid: u32) -> Result<u32, ProcError> {
    let (path, text) = read_stat(pid)?;
    let ppid = stat_number(&path, &text, 4, "ppid")?;
    u32::try_from(ppid).map_err(|_| ProcError::Parse {
        path,
        why: format!("field 4 (ppid) {ppid} is not a pid"),
    })
}

/// Whether `pid` is exiting or gone: no `/proc/<pid>/stat`, a zombie (`Z`, `X`), or the
/// kernel's PF_EXITING flag (field 9) set. An exiting process leaves its cgroups before its
/// parent or a pidfd learns that it ended.
pub fn is_exiting(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok((_, text)) = read_stat(pid) else {
        return true;
    };
    let state = stat_field(&text, 3).unwrap_or_default();
    let flags: u64 = stat_field(&text, 9)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0
}

/// The kernel's boot id, unique per boot.
pub fn boot_id() -> Result<String, ProcError> {
    let path = PathBuf::from("/proc/sys/kernel/random/boot_id");
    fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| ProcError::Read { path, source })
}

/// The name (`comm`) of every thread of `pid`, as `(tid, name)`.
pub fn threads(pid: u32) -> Result<Vec<(u32, String)>, ProcError> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let entries = fs::read_dir(&dir).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ProcError::NoSuchProcess(pid)
        } else {
            ProcError::Read {
                path: dir.clone(),
                source,
            }
        }
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread may end between listing and reading: skip it.
        if let Ok(name) = fs::read_to_string(entry.path().join("comm")) {
            out.push((tid, name.trim_end().to_string()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The command name (`comm`) of `pid`.
pub fn comm(pid: u32) -> Result<String, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/comm"));
    fs::read_to_string(&path)
        .map(|s| s.trim_end().to_string())
        .map_err(|source| ProcError::Read { path, source })
}

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Result<u64, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = fs::read_to_string(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| ProcError::Parse {
            path,
            why: "no VmRSS line".into(),
        })
}

/// User + system CPU time of `pid` (all threads) in clock ticks (fields 14 and 15 of `stat`).
pub fn cpu_ticks(pid: u32) -> Result<u64, ProcError> {
    let (path, text) = read_stat(pid)?;
    Ok(stat_number(&path, &text, 14, "utime")? + stat_number(&path, &text, 15, "stime")?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_skips_tricky_command_names() {
        let line =
            "4242 (a) b (c) R 1 2 3 0 -1 4194304 97 0 0 0 1 2 0 0 20 0 1 0 78236 3133440 359";
        assert_eq!(stat_field(line, 22), Some("78236"));
        assert_eq!(stat_field(line, 3), Some("R"));
        assert_eq!(stat_field(line, 4), Some("1"));
        assert_eq!(stat_field("4242 (x) R 1", 22), None);
        assert_eq!(stat_field("garbage", 3), None);
        assert_eq!(stat_field(line, 2), None, "the comm is not a counted field");
    }

    #[test]
    fn a_child_names_its_parent_and_is_exiting_once_a_zombie() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(parent(pid).unwrap(), std::process::id());
        assert!(!is_exiting(pid));
        assert!(!is_exiting(std::process::id()));
        child.kill().unwrap();
        // Not reaped yet: a zombie, which has left its cgroups.
        let t = std::time::Instant::now();
        while !is_exiting(pid) && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(is_exiting(pid));
        child.wait().unwrap();
        assert!(is_exiting(pid), "a reaped process is gone");
        assert!(parent(pid).is_err());
    }

    #[test]
    fn own_identity_is_alive_and_a_changed_one_is_not() {
        let me = ProcessIdentity::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!reused.is_alive());
        let other_boot = ProcessIdentity {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..me
        };
        assert!(!other_boot.is_alive());
    }

    #[test]
    fn threads_of_self_include_the_main_thread() {
        let pid = std::process::id();
        let t = threads(pid).unwrap();
        assert!(t.iter().any(|(tid, _)| *tid == pid));
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_ticks(pid).is_ok());
        assert!(matches!(
            start_ticks(u32::MAX),
            Err(ProcError::NoSuchProcess(_))
        ));
    }
}
