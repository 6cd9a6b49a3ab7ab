//! The VMM side of the control socket: accepts connections and splits their input into request
//! lines; the VMM answers each (see [`crate::control`] for the protocol).
//!
//! The socket file has mode 0600 whatever the umask: a request can pause or end the VM, so only
//! the VMM's user (the agent) may connect. The mode is set between `bind` and `listen`, so no
//! client can connect while the file still has the umask's mode.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::{Lines, take_lines};

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

/// Mode of the socket file.
pub const SOCKET_MODE: u32 = 0o600;

/// Why [`bind_replacing_stale`] failed.
#[derive(Debug)]
pub(crate) enum StaleBind {
    /// A running process listens on the path.
    InUse,
    /// The socket could not be created (or a stale file removed).
    Io(std::io::Error),
}

/// [`listen_private`] at `path`, replacing a stale socket file (one nobody listens on) and
/// refusing a live one.
pub(crate) fn bind_replacing_stale(path: &Path) -> Result<UnixListener, StaleBind> {
    match listen_private(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(StaleBind::InUse);
            }
            std::fs::remove_file(path).map_err(StaleBind::Io)?;
            listen_private(path).map_err(|e| {
                if e.kind() == ErrorKind::AddrInUse {
                    StaleBind::InUse
                } else {
                    StaleBind::Io(e)
                }
            })
        }
        Err(e) => Err(StaleBind::Io(e)),
    }
}

/// Creates a listening Unix socket at `path` with mode [`SOCKET_MODE`].
pub(crate) fn listen_private(path: &Path) -> std::io::Result<UnixListener> {
    let last = std::io::Error::last_os_error;
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(last());
    }
    // SAFETY: `raw` was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_un is plain old data; all zeros is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!(
                "a socket path must be 1 to {} bytes without NUL",
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // SAFETY: `addr` is an initialised sockaddr_un, `len` covers the path and its NUL and does
    // not exceed the struct; `fd` is an open socket.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last());
    }
    let private = std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE));
    // SAFETY: listen(2) on the socket bound above.
    let rc = private.and_then(|()| match unsafe { libc::listen(fd.as_raw_fd(), 128) } {
        0 => Ok(()),
        _ => Err(last()),
    });
    if let Err(e) = rc {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(UnixListener::from(fd))
}

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
        let listener = bind_replacing_stale(path).map_err(|e| match e {
            StaleBind::InUse => ControlSocketError::InUse(path.to_path_buf()),
            StaleBind::Io(e) => bind_err(e),
        })?;
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
        let Lines { lines, overlong } = take_lines(&mut client.input);
        closed |= overlong;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_private_not_the_umask_s_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, SOCKET_MODE, "{mode:o}");
        let _client = UnixStream::connect(&path).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        server.accept();
        assert_eq!(server.clients.len(), 1);
        // A stale file (nobody listening) is replaced, private again.
        drop(server);
        let server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, SOCKET_MODE, "{mode:o}");
        // A live one is refused and left alone.
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlSocketError::InUse(_))
        ));
        assert!(path.exists());
        server.remove();
        assert!(!path.exists());
    }

    #[test]
    fn an_overlong_path_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s".repeat(200));
        let err = ControlServer::bind(&path).unwrap_err().to_string();
        assert!(err.contains("1 to 107 bytes"), "{err}");
    }
}
