//! How a VM ended: `colo-vmm`'s exit statuses and the exit record it leaves behind.
//!
//! The guest's own exit code (written to I/O port 0xf4) passes through as the exit status when it
//! is in `0..=GUEST_EXIT_CODE_MAX`; every other way of ending has a reserved status above that
//! range, so a supervisor can tell them apart from the status alone.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Highest exit code a guest can pass through port 0xf4 (the workload guest's `exit=` limit).
pub const GUEST_EXIT_CODE_MAX: i32 = 63;
/// Bad input: bad arguments, missing or unreadable kernel, too much memory, zero vCPUs, a control
/// socket already in use, no usable `/dev/kvm`.
pub const EXIT_BAD_INPUT: i32 = 64;
/// The guest reset itself (i8042 reset command, KVM reset event).
pub const EXIT_GUEST_RESET: i32 = 65;
/// The guest crashed: triple fault, KVM internal or emulation error, failed VM entry, or an exit
/// code outside `0..=GUEST_EXIT_CODE_MAX`.
pub const EXIT_GUEST_CRASH: i32 = 66;
/// The VM was ended by the `shutdown` control request.
pub const EXIT_SHUTDOWN: i32 = 67;
/// The VMM received SIGTERM or SIGINT.
pub const EXIT_SIGNAL: i32 = 68;
/// The VMM itself failed after start (KVM or host error).
pub const EXIT_VMM_ERROR: i32 = 70;

/// Most bytes of an exit record (a real one is a few hundred).
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// Opens a file a less trusted process could have replaced (a jailed VMM owns the directory):
/// never through a symlink, never blocking on a FIFO, only a regular file.
pub fn open_untrusted(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(f)
}

/// Reads all of a file opened with [`open_untrusted`], refusing one over `max` bytes.
pub fn read_untrusted(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    open_untrusted(path)?.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "{} is over {max} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Why the VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The guest wrote its exit code to port 0xf4.
    GuestExit,
    /// The guest reset itself.
    GuestReset,
    /// The guest crashed (triple fault, KVM internal/emulation error, failed entry).
    GuestCrash,
    /// A `shutdown` control request.
    Shutdown,
    /// SIGTERM or SIGINT.
    Signal,
    /// The VMM failed (bad input before start, or a host error while running).
    VmmError,
}

impl ExitReason {
    /// The name used in the exit record and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GuestExit => "guest_exit",
            Self::GuestReset => "guest_reset",
            Self::GuestCrash => "guest_crash",
            Self::Shutdown => "shutdown",
            Self::Signal => "signal",
            Self::VmmError => "vmm_error",
        }
    }
}

/// The record `--exit-record PATH` holds once the VMM has ended, written atomically (temporary
/// file, fsync, rename), so a supervisor that was not running at that moment still learns the
/// outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The VMM's exit status.
    pub exit_code: i32,
    /// Why the VM ended.
    pub reason: ExitReason,
    /// A one-line explanation (e.g. `guest wrote 3 to port 0xf4`).
    pub message: String,
    /// Wall-clock time of the end, milliseconds since the Unix epoch.
    pub ended_unix_ms: i64,
    /// CPU time the VMM process used (user + system, all threads), seconds.
    pub cpu_seconds: f64,
    /// Process id of the VMM.
    pub pid: u32,
    /// Output dropped to stay within `--log-limit` (all zero without a limit; absent in records
    /// of VMMs that predate it).
    #[serde(default)]
    pub dropped: DroppedBytes,
}

/// Bytes of output a VMM dropped to stay within `--log-limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedBytes {
    /// Guest serial output, oldest first (`--serial` file rotated to `PATH.1`), or newest first
    /// on stdout.
    pub serial: u64,
    /// The VMM's `--log` file, oldest first (rotated to `PATH.1`).
    pub log: u64,
    /// The VMM's messages kept off stderr once it carried the limit, newest first.
    pub stderr: u64,
}

impl DroppedBytes {
    /// Whether anything was dropped.
    pub fn any(&self) -> bool {
        self.serial + self.log + self.stderr > 0
    }
}

/// Errors reading or writing an exit record.
#[derive(Debug, thiserror::Error)]
pub enum ExitRecordError {
    /// The record file could not be read or written.
    #[error("exit record {path}: {source}")]
    Io {
        /// The record file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The record file does not hold a valid record.
    #[error("exit record {path} is not valid JSON of an exit record: {source}")]
    Parse {
        /// The record file.
        path: PathBuf,
        /// What the parser said.
        source: serde_json::Error,
    },
}

impl ExitRecord {
    /// Writes the record to `path` atomically: `PATH.tmp`, fsync, rename, fsync of the directory.
    pub fn write_atomic(&self, path: &Path) -> Result<(), ExitRecordError> {
        let io = |source| ExitRecordError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut json = serde_json::to_vec(self).map_err(|e| io(std::io::Error::other(e)))?;
        json.push(b'\n');
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, path).map_err(io)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(d) = File::open(dir) {
            // Durability of the rename; a failure here leaves a correct record, only less durable.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads the record at `path`, which a jailed VMM wrote: a symlink, a FIFO or a file
    /// over [`MAX_RECORD_BYTES`] is refused.
    pub fn read(path: &Path) -> Result<Self, ExitRecordError> {
        let text =
            read_untrusted(path, MAX_RECORD_BYTES).map_err(|source| ExitRecordError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        serde_json::from_slice(&text).map_err(|source| ExitRecordError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_through_symlinks_fifos_or_oversized_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "{}").unwrap();
        let link = dir.path().join("exit.json");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(read_untrusted(&link, 100).is_err());
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_untrusted(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let big = dir.path().join("big");
        fs::write(&big, vec![b' '; 101]).unwrap();
        assert!(
            read_untrusted(&big, 100)
                .unwrap_err()
                .to_string()
                .contains("over 100")
        );
        assert_eq!(read_untrusted(&secret, 100).unwrap(), b"{}");
    }

    #[test]
    fn record_round_trips_through_the_documented_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        let rec = ExitRecord {
            exit_code: 3,
            reason: ExitReason::GuestExit,
            message: "guest wrote 3 to port 0xf4".into(),
            ended_unix_ms: 1_700_000_000_000,
            cpu_seconds: 0.25,
            pid: 42,
            dropped: DroppedBytes {
                serial: 7,
                ..Default::default()
            },
        };
        rec.write_atomic(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""reason":"guest_exit""#), "{text}");
        assert!(text.contains(r#""exit_code":3"#), "{text}");
        assert_eq!(ExitRecord::read(&path).unwrap(), rec);
        assert!(!dir.path().join("exit.json.tmp").exists());
    }

    #[test]
    fn a_record_without_dropped_counts_reads_as_nothing_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        fs::write(
            &path,
            r#"{"exit_code":0,"reason":"guest_exit","message":"m","ended_unix_ms":1,"cpu_seconds":0.0,"pid":1}"#,
        )
        .unwrap();
        assert!(!ExitRecord::read(&path).unwrap().dropped.any());
    }

    #[test]
    fn reading_garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        fs::write(&path, "not json").unwrap();
        let err = ExitRecord::read(&path).unwrap_err().to_string();
        assert!(err.contains("exit.json"), "{err}");
    }

    #[test]
    fn reserved_statuses_are_distinct_and_above_guest_codes() {
        let all = [
            EXIT_BAD_INPUT,
            EXIT_GUEST_RESET,
            EXIT_GUEST_CRASH,
            EXIT_SHUTDOWN,
            EXIT_SIGNAL,
            EXIT_VMM_ERROR,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(*a > GUEST_EXIT_CODE_MAX);
            assert!(all[i + 1..].iter().all(|b| b != a));
        }
    }
}
