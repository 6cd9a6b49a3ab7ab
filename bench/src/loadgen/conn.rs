//! The generator's connections and its `epoll` set: HTTP/1.1 response framing, (re)connecting
//! a keep-alive connection, and the system-call error helpers.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::LoadError;

pub(super) fn sys(what: &'static str) -> impl FnOnce(std::io::Error) -> LoadError {
    move |source| LoadError::Sys { what, source }
}

pub(super) fn check(rc: i32, what: &'static str) -> Result<i32, LoadError> {
    if rc < 0 {
        Err(LoadError::Sys {
            what,
            source: std::io::Error::last_os_error(),
        })
    } else {
        Ok(rc)
    }
}

pub(super) struct Conn {
    pub(super) stream: Option<TcpStream>,
    /// Due time of the request in flight.
    pub(super) busy: Option<u64>,
    pub(super) buf: Vec<u8>,
}

/// Where a response ends in `buf`: `Some((consumed, status, close))` once complete.
pub(super) fn parse_response(buf: &[u8]) -> Option<Result<(usize, u16, bool), ()>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..end];
    let status = head
        .split(|&c| c == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return Some(Err(()));
    };
    let mut length = None;
    let mut close = false;
    for line in head.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let (k, v) = (&line[..colon], line[colon + 1..].trim_ascii());
        if k.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
        } else if k.eq_ignore_ascii_case(b"connection") && v.eq_ignore_ascii_case(b"close") {
            close = true;
        }
    }
    // The generator needs a length to keep connections alive (nginx always sends one for files).
    let Some(length) = length else {
        return Some(Err(()));
    };
    (buf.len() >= end + length).then_some(Ok((end + length, status, close)))
}

pub(super) struct Epoll {
    pub(super) fd: OwnedFd,
}

impl Epoll {
    pub(super) fn new() -> Result<Self, LoadError> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let rc = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        let fd = check(rc, "epoll_create1")?;
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    pub(super) fn ctl(&self, op: i32, fd: RawFd, token: u64) -> Result<(), LoadError> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: ev lives across the call; the kernel copies it.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        check(rc, "epoll_ctl")?;
        Ok(())
    }
}

pub(super) fn drop_conn(ep: &Epoll, c: &mut Conn) {
    if let Some(s) = c.stream.take() {
        let _ = ep.ctl(libc::EPOLL_CTL_DEL, s.as_raw_fd(), 0);
    }
    c.busy = None;
    c.buf.clear();
}

pub(super) fn reconnect(
    ep: &Epoll,
    c: &mut Conn,
    i: usize,
    addr: SocketAddr,
    connect: &dyn Fn(SocketAddr) -> Result<TcpStream, LoadError>,
    reconnects: &mut u64,
) -> Result<(), LoadError> {
    drop_conn(ep, c);
    let s = connect(addr)?;
    ep.ctl(libc::EPOLL_CTL_ADD, s.as_raw_fd(), i as u64)?;
    c.stream = Some(s);
    *reconnects += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_content_length() {
        let r =
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabcHTTP/1.1";
        assert_eq!(parse_response(r), Some(Ok((r.len() - 8, 200, false))));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"),
            None
        );
        let closing = b"HTTP/1.1 503 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert_eq!(
            parse_response(closing),
            Some(Ok((closing.len(), 503, true)))
        );
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n"), Some(Err(())));
    }
}
