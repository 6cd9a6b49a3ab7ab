//! A small blocking client of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{ControlRequest, Stats};

/// Errors of [`ControlClient`].
#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    /// Connecting to the socket failed (no VMM there, or permissions).
    #[error("cannot connect to control socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Sending or receiving failed (the VMM ended, or timed out).
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The VMM closed the connection without a reply.
    #[error("control socket {path}: the VMM closed the connection without replying")]
    Closed {
        /// The socket path.
        path: PathBuf,
    },
    /// The reply is not the JSON the protocol defines.
    #[error("control socket {path}: malformed reply `{reply}`: {why}")]
    Malformed {
        /// The socket path.
        path: PathBuf,
        /// The reply line.
        reply: String,
        /// What is wrong with it.
        why: String,
    },
    /// The VMM answered `{"ok":false}`.
    #[error("the VMM refused `{request}`: {error}")]
    Refused {
        /// The request line.
        request: String,
        /// The VMM's error message.
        error: String,
    },
}

/// One connection to a VMM's control socket; requests are answered in order.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects to the socket at `path`, with a 10 s timeout for each reply.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ControlClientError> {
        Self::connect_with_timeout(path, Duration::from_secs(10))
    }

    /// Connects with the given reply timeout.
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

    /// Sends `request` and returns the reply object (`ok` was true).
    pub fn request(
        &mut self,
        request: &ControlRequest,
    ) -> Result<serde_json::Value, ControlClientError> {
        let line = request.to_line();
        let io = |source| ControlClientError::Io {
            path: self.path.clone(),
            source,
        };
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(io)?;
        let mut reply = String::new();
        let n = self
            .reader
            .read_line(&mut reply)
            .map_err(|source| ControlClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ControlClientError::Closed {
                path: self.path.clone(),
            });
        }
        let malformed = |why: String| ControlClientError::Malformed {
            path: self.path.clone(),
            reply: reply.trim().to_string(),
            why,
        };
        let value: serde_json::Value =
            serde_json::from_str(reply.trim()).map_err(|e| malformed(e.to_string()))?;
        match value.get("ok").and_then(|v| v.as_bool()) {
            Some(true) => Ok(value),
            Some(false) => Err(ControlClientError::Refused {
                request: line,
                error: value
                    .get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("(no message)")
                    .to_string(),
            }),
            None => Err(malformed("no boolean `ok` field".into())),
        }
    }

    /// `stats`.
    pub fn stats(&mut self) -> Result<Stats, ControlClientError> {
        let value = self.request(&ControlRequest::Stats)?;
        serde_json::from_value(value.clone()).map_err(|e| ControlClientError::Malformed {
            path: self.path.clone(),
            reply: value.to_string(),
            why: e.to_string(),
        })
    }

    /// `pause`: returns once every vCPU has stopped.
    pub fn pause(&mut self) -> Result<(), ControlClientError> {
        self.request(&ControlRequest::Pause).map(drop)
    }

    /// `resume`.
    pub fn resume(&mut self) -> Result<(), ControlClientError> {
        self.request(&ControlRequest::Resume).map(drop)
    }

    /// `shutdown`: the VMM ends with [`crate::EXIT_SHUTDOWN`] after replying.
    pub fn shutdown(&mut self) -> Result<(), ControlClientError> {
        self.request(&ControlRequest::Shutdown).map(drop)
    }

    /// `set_io_limit DISK bw=.. iops=..` (0 = unlimited).
    pub fn set_io_limit(
        &mut self,
        disk: &str,
        bw: u64,
        iops: u64,
    ) -> Result<(), ControlClientError> {
        self.request(&ControlRequest::SetIoLimit {
            disk: disk.to_string(),
            bw,
            iops,
        })
        .map(drop)
    }
}
