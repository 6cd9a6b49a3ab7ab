//! The guest's end of the host channel: a virtio-console port (`/dev/hvc0` by default, or the
//! device `colo.channel=` names on the kernel command line), non-blocking, in raw mode when it
//! is a tty (hvc is one: without raw mode the line discipline would echo, translate CR/LF and
//! eat control bytes of the binary stream).
//!
//! Outgoing frames wait in one buffer; the session adds an output frame only when it is empty,
//! so it holds at most one data frame and a few control frames.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use colo_guest_agent::{Decoder, FrameError, GuestMessage, HostMessage, frame};
use nix::sys::termios;

/// The channel device when the command line names none.
pub const DEFAULT_DEVICE: &str = "/dev/hvc0";
/// Bytes read from the channel at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Errors of the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The device could not be opened.
    #[error("cannot open the host channel {path}: {source}")]
    Open {
        /// The device.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The device could not be put into raw mode.
    #[error("cannot put the host channel {path} into raw mode: {source}")]
    Raw {
        /// The device.
        path: String,
        /// The cause.
        source: nix::Error,
    },
    /// Reading or writing failed.
    #[error("host channel {op} failed: {source}")]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The host closed its end.
    #[error("the host closed the channel")]
    Closed,
    /// The host sent something that is not the protocol.
    #[error("bad frame from the host: {0}")]
    Frame(#[from] FrameError),
}

/// The channel device named by `colo.channel=` on the kernel command line, or the default.
/// Only paths under `/dev/` count.
pub fn device_from_cmdline(cmdline: &str) -> &str {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("colo.channel="))
        .rfind(|p| p.starts_with("/dev/") && !p.contains(".."))
        .unwrap_or(DEFAULT_DEVICE)
}

/// Whether opening failed because the device or its driver is not there yet.
fn not_there_yet(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENXIO))
}

/// The open channel.
#[derive(Debug)]
pub struct Channel {
    file: File,
    decoder: Decoder<HostMessage>,
    tx: Vec<u8>,
    /// Bytes of `tx` already written.
    tx_pos: usize,
}

impl Channel {
    /// Opens `path`, retrying while the device or its driver is not there yet (the driver may
    /// still be probing) until `wait` has passed.
    pub fn open(path: &str, wait: Duration) -> Result<Self, ChannelError> {
        let deadline = Instant::now() + wait;
        let file = loop {
            let r = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
                .open(Path::new(path));
            match r {
                Ok(f) => break f,
                // The node appears before its driver is ready (ENODEV from hvc meanwhile).
                Err(e) if not_there_yet(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(source) => {
                    return Err(ChannelError::Open {
                        path: path.into(),
                        source,
                    });
                }
            }
        };
        if let Ok(mut t) = termios::tcgetattr(file.as_fd()) {
            termios::cfmakeraw(&mut t);
            let raw_err = |source| ChannelError::Raw {
                path: path.into(),
                source,
            };
            termios::tcsetattr(file.as_fd(), termios::SetArg::TCSANOW, &t).map_err(raw_err)?;
            // Bytes that came before raw mode went through the line discipline: drop them. The
            // host speaks first only after this boot's `Ready`, so nothing of its is lost.
            termios::tcflush(file.as_fd(), termios::FlushArg::TCIFLUSH).map_err(raw_err)?;
        }
        Ok(Self::from_file(file))
    }

    /// A channel over an open descriptor (a socket in tests), made non-blocking.
    #[cfg(test)]
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> io::Result<Self> {
        let file = File::from(fd);
        let raw = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL touch no memory.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self::from_file(file))
    }

    fn from_file(file: File) -> Self {
        Self {
            file,
            decoder: Decoder::new(),
            tx: Vec::new(),
            tx_pos: 0,
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Queues one message.
    pub fn queue(&mut self, message: &GuestMessage) {
        frame::encode(message, &mut self.tx);
    }

    /// Whether bytes wait to be written.
    pub fn wants_write(&self) -> bool {
        self.tx_pos < self.tx.len()
    }

    /// Drops what has not been written (the host reconnected and asks for a fresh start).
    pub fn discard_unwritten(&mut self) {
        self.tx.clear();
        self.tx_pos = 0;
    }

    /// Writes what the device takes now.
    pub fn flush(&mut self) -> Result<(), ChannelError> {
        while self.wants_write() {
            match self.file.write(&self.tx[self.tx_pos..]) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => self.tx_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ChannelError::Io {
                        op: "write",
                        source,
                    });
                }
            }
        }
        if !self.wants_write() {
            self.tx.clear();
            self.tx_pos = 0;
        }
        Ok(())
    }

    /// Reads what is there and returns the whole messages it completes.
    pub fn receive(&mut self) -> Result<Vec<HostMessage>, ChannelError> {
        let mut buf = [0u8; READ_CHUNK];
        let mut messages = Vec::new();
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => {
                    self.decoder.feed(&buf[..n]);
                    while let Some(m) = self.decoder.next_message()? {
                        messages.push(m);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(messages),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ChannelError::Io { op: "read", source }),
            }
            // Hand over what arrived before reading more, so a fast host cannot grow the list.
            if !messages.is_empty() {
                return Ok(messages);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use super::*;

    #[test]
    fn the_device_comes_from_the_command_line_when_it_names_one() {
        assert_eq!(device_from_cmdline("console=ttyS0 quiet"), "/dev/hvc0");
        assert_eq!(
            device_from_cmdline("console=ttyS0 colo.channel=/dev/vport0p1 quiet"),
            "/dev/vport0p1"
        );
        assert_eq!(device_from_cmdline("colo.channel=/etc/passwd"), "/dev/hvc0");
        assert_eq!(
            device_from_cmdline("colo.channel=/dev/../etc/x"),
            "/dev/hvc0"
        );
    }

    #[test]
    fn frames_go_out_and_come_in_over_a_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut chan = Channel::from_fd(OwnedFd::from(a)).unwrap();
        chan.queue(&GuestMessage::Ready { version: 1 });
        assert!(chan.wants_write());
        chan.flush().unwrap();
        assert!(!chan.wants_write());
        let mut got = [0u8; 10];
        (&b).read_exact(&mut got).unwrap();
        assert_eq!(
            got.to_vec(),
            frame::to_bytes(&GuestMessage::Ready { version: 1 })
        );
        assert!(chan.receive().unwrap().is_empty(), "nothing sent yet");
        let ack = frame::to_bytes(&HostMessage::Ack { upto: 5 });
        (&b).write_all(&ack[..3]).unwrap();
        assert!(chan.receive().unwrap().is_empty(), "half a frame");
        (&b).write_all(&ack[3..]).unwrap();
        assert_eq!(chan.receive().unwrap(), vec![HostMessage::Ack { upto: 5 }]);
        (&b).write_all(&[0x00]).unwrap();
        assert!(matches!(
            chan.receive(),
            Err(ChannelError::Frame(FrameError::BadMagic(0)))
        ));
        drop(b);
        let mut fresh = Channel::from_fd(OwnedFd::from(
            std::os::unix::net::UnixStream::pair().unwrap().0,
        ))
        .unwrap();
        assert!(matches!(fresh.receive(), Err(ChannelError::Closed)));
    }
}
