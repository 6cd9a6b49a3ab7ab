//! TEMPORARY stand-in for the `colo_vmm` library's exit record and control client, with the
//! same names and wire format as in docs/vmm.md, until vmm-core's milestone A is on main; then
//! `vmm/mod.rs` re-exports the real ones and this file goes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why the VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The guest wrote its exit code to port 0xf4.
    GuestExit,
    /// The guest reset itself.
    GuestReset,
    /// The guest crashed.
    GuestCrash,
    /// A `shutdown` control request.
    Shutdown,
    /// SIGTERM or SIGINT.
    Signal,
    /// The VMM failed.
    VmmError,
}

/// The VMM's exit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The VMM's exit status.
    pub exit_code: i32,
    /// Why the VM ended.
    pub reason: ExitReason,
    /// A one-line explanation.
    pub message: String,
    /// When it ended (Unix ms).
    pub ended_unix_ms: i64,
    /// CPU time of the VMM process, seconds.
    pub cpu_seconds: f64,
    /// The VMM's pid.
    pub pid: u32,
}

/// Errors reading an exit record.
#[derive(Debug, thiserror::Error)]
pub enum ExitRecordError {
    /// Unreadable.
    #[error("exit record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a record.
    #[error("exit record {path} is not valid JSON of an exit record: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
}

impl ExitRecord {
    /// Reads the record at `path`.
    pub fn read(path: &Path) -> Result<Self, ExitRecordError> {
        let text = std::fs::read(path).map_err(|source| ExitRecordError::Io {
            path: path.into(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ExitRecordError::Parse {
            path: path.into(),
            source,
        })
    }
}

/// Running or paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// vCPUs run.
    Running,
    /// vCPUs are stopped.
    Paused,
}

/// One vCPU thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuStats {
    /// vCPU index.
    pub index: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU time, ns.
    pub cpu_ns: u64,
}

/// Reply to `stats` (the fields the agent uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Running or paused.
    pub state: VmState,
    /// VMM pid.
    pub pid: u32,
    /// vCPU threads.
    pub vcpus: Vec<VcpuStats>,
    /// IO thread.
    pub io_tid: Option<u32>,
    /// Work units done.
    #[serde(default)]
    pub progress: u64,
}

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    /// Could not connect.
    #[error("cannot connect to control socket {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// IO failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad reply or refusal.
    #[error("control socket {path}: {why}")]
    Reply {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

/// A blocking control-socket client.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects with a reply timeout.
    pub fn connect_with_timeout(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<Self, ControlClientError> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path).map_err(|source| ControlClientError::Connect {
            path: path.clone(),
            source,
        })?;
        let io = |source| ControlClientError::Io {
            path: path.clone(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Self {
            path,
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn request(&mut self, line: &str) -> Result<serde_json::Value, ControlClientError> {
        let io = |path: &PathBuf, source| ControlClientError::Io {
            path: path.clone(),
            source,
        };
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| io(&self.path, e))?;
        let mut reply = String::new();
        self.reader
            .read_line(&mut reply)
            .map_err(|e| io(&self.path, e))?;
        let bad = |why: String| ControlClientError::Reply {
            path: self.path.clone(),
            why,
        };
        let v: serde_json::Value =
            serde_json::from_str(reply.trim()).map_err(|e| bad(format!("{e}: {reply:?}")))?;
        if v.get("ok").and_then(|o| o.as_bool()) == Some(true) {
            Ok(v)
        } else {
            Err(bad(format!("the VMM refused `{line}`: {v}")))
        }
    }

    /// `stats`.
    pub fn stats(&mut self) -> Result<Stats, ControlClientError> {
        let v = self.request("stats")?;
        serde_json::from_value(v).map_err(|e| ControlClientError::Reply {
            path: self.path.clone(),
            why: e.to_string(),
        })
    }

    /// `pause`.
    pub fn pause(&mut self) -> Result<(), ControlClientError> {
        self.request("pause").map(drop)
    }

    /// `resume`.
    pub fn resume(&mut self) -> Result<(), ControlClientError> {
        self.request("resume").map(drop)
    }

    /// `shutdown`.
    pub fn shutdown(&mut self) -> Result<(), ControlClientError> {
        self.request("shutdown").map(drop)
    }

    /// `set_io_limit`.
    pub fn set_io_limit(
        &mut self,
        disk: &str,
        bw: u64,
        iops: u64,
    ) -> Result<(), ControlClientError> {
        self.request(&format!("set_io_limit {disk} bw={bw} iops={iops}"))
            .map(drop)
    }
}
