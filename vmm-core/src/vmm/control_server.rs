//! The VMM side of the control socket: accepts connections and splits their input into request
//! lines; the VMM answers each (see [`crate::control`] for the protocol).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors binding the control socket; both are bad input.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    /// A running VMM already listens on the path.
    #[error("control socket {0} is in use by another running VMM; give each VM its own path")]
    InUse(PathBuf),
    /// The path cannot be bound.
    #[error("cannot create control socket {path}: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Longest request line accepted; longer input closes the connection.
const MAX_LINE: usize = 4096;

/// One connected client and its unfinished input.
#[derive(Debug)]
pub struct Client {
    /// The connection.
    pub stream: UnixStream,
    input: Vec<u8>,
}

/// The listening socket and its clients.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    /// The listener (non-blocking).
    pub listener: UnixListener,
    /// Connected clients.
    pub clients: Vec<Client>,
}

impl ControlServer {
    /// Binds `path`. A stale socket file (nobody listening) is replaced; a live one is refused.
    pub fn bind(path: &Path) -> Result<Self, ControlSocketError> {
        let bind_err = |source| ControlSocketError::Bind {
            path: path.to_path_buf(),
            source,
        };
        let listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                if UnixStream::connect(path).is_ok() {
                    return Err(ControlSocketError::InUse(path.to_path_buf()));
                }
                std::fs::remove_file(path).map_err(bind_err)?;
                UnixListener::bind(path).map_err(|e| {
                    if e.kind() == ErrorKind::AddrInUse {
                        ControlSocketError::InUse(path.to_path_buf())
                    } else {
                        bind_err(e)
                    }
                })?
            }
            Err(e) => return Err(bind_err(e)),
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            listener,
            clients: Vec::new(),
        })
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            // A client that stops reading must not stall the VMM for long.
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            self.clients.push(Client {
                stream,
                input: Vec::new(),
            });
        }
    }

    /// Reads what client `i` sent; returns its complete lines, or `None` when it is gone (closed,
    /// error, or a line over 4 KiB) and was dropped.
    pub fn read_lines(&mut self, i: usize) -> Option<Vec<String>> {
        let client = &mut self.clients[i];
        let mut buf = [0u8; 1024];
        let mut closed = false;
        loop {
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => client.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        while let Some(pos) = client.input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = client.input.drain(..=pos).collect();
            lines.push(String::from_utf8_lossy(&line).trim().to_string());
        }
        if client.input.len() > MAX_LINE {
            closed = true;
        }
        if closed && lines.is_empty() {
            self.clients.remove(i);
            return None;
        }
        Some(lines)
    }

    /// Sends one reply line to client `i`.
    pub fn reply(&mut self, i: usize, line: &str) {
        let client = &mut self.clients[i];
        // Replies are small; the stream is non-blocking for reads, so write in a short loop.
        let mut data = line.as_bytes().to_vec();
        data.push(b'\n');
        let mut written = 0;
        let mut spins = 0;
        while written < data.len() && spins < 1000 {
            match client.stream.write(&data[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    spins += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    /// Removes the socket file.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
