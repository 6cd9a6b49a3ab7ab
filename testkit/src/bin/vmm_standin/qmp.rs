//! A small QMP client (QEMU's JSON control protocol) on QEMU's Unix socket: the greeting,
//! `qmp_capabilities`, then one command at a time. Events that arrive between replies are kept;
//! the last of them, `SHUTDOWN` with its `reason`, tells how the guest ended once QEMU has
//! exited ([`Qmp::drain_events`] reads what QEMU sent before closing).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one command may take (TCG can be slow on a loaded host).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors talking to QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket failed.
    #[error("QMP socket {path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// QEMU closed the connection (it is exiting).
    #[error("QMP: QEMU closed the connection")]
    Closed,
    /// QEMU sent something that is not QMP.
    #[error("QMP: unexpected message from QEMU: {0}")]
    Protocol(String),
    /// QEMU refused the command.
    #[error("QMP {command}: {message}")]
    Refused {
        /// The command.
        command: String,
        /// QEMU's `error.desc`.
        message: String,
    },
}

/// One QMP connection.
#[derive(Debug)]
pub struct Qmp {
    path: String,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    /// Connects to `path`, retrying while it does not exist yet and `alive()` says QEMU runs,
    /// until `deadline`; then negotiates capabilities.
    pub fn connect(
        path: &Path,
        deadline: Instant,
        mut alive: impl FnMut() -> bool,
    ) -> Result<Self, QmpError> {
        let name = path.display().to_string();
        let io = |source| QmpError::Io {
            path: name.clone(),
            source,
        };
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline || !alive() => return Err(io(e)),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Self {
            path: name,
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` (with `arguments`) and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        loop {
            let mut m = self.read_message()?;
            if let Some(r) = m.get_mut("return") {
                return Ok(r.take());
            }
            if let Some(e) = m.get("error") {
                return Err(QmpError::Refused {
                    command: command.into(),
                    message: e["desc"].as_str().unwrap_or("(no description)").into(),
                });
            }
            if m.get("event").is_some() {
                self.events.push(m);
            } else {
                return Err(QmpError::Protocol(m.to_string()));
            }
        }
    }

    /// Every event received, including what QEMU sent before it closed the connection (call
    /// once QEMU has exited: reads until end of file or the reply timeout).
    pub fn drain_events(&mut self) -> Vec<Value> {
        while let Ok(m) = self.read_message() {
            if m.get("event").is_some() {
                self.events.push(m);
            }
        }
        std::mem::take(&mut self.events)
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Protocol(line.trim().to_string()))
    }
}

/// The `reason` of the last `SHUTDOWN` event (`guest-shutdown`, `guest-reset`, `guest-panic`,
/// `host-qmp-quit`, `host-signal`, ...).
pub fn shutdown_reason(events: &[Value]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "SHUTDOWN")
        .and_then(|e| e["data"]["reason"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_shutdown_names_the_reason() {
        let events = [
            json!({"event": "STOP", "data": {}}),
            json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}),
        ];
        assert_eq!(shutdown_reason(&events).as_deref(), Some("guest-shutdown"));
        assert_eq!(shutdown_reason(&events[..1]), None);
    }
}
