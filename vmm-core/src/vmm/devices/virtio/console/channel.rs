//! The host side of the console: `--channel PATH`, a Unix stream socket (mode 0600) that serves
//! one client at a time, and the `colo-chan` thread that moves bytes between that client and
//! the guest's queues. Further clients wait in the listen backlog until the current one leaves.
//!
//! The thread sleeps in `ppoll` on a wake-up eventfd, the console's queue notification, the
//! listener (while no client is connected) and the client: readable only while no byte from it
//! is waiting and the guest has a receive buffer posted, writable only while guest output waits.
//! So a guest that posts no buffers leaves the client's bytes in the socket (its sends block),
//! and a client that does not read leaves the guest's transmit queue full (its writes block).
//! A client that closes its connection, or its sending side, is dropped once every byte it sent
//! has been read (a hang-up while the guest takes nothing leaves its bytes in the socket until
//! it does); one whose socket reports an error is dropped at once. Bytes read from it and guest
//! output not yet sent stay for the next client.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::super::device_thread::DeviceThread;
use super::{Console, GuestOutput, HostInput};
use crate::seccomp::ThreadKind;
use crate::vmm::control_server::{StaleBind, bind_replacing_stale};

/// Stack of the channel thread.
const CHANNEL_STACK_SIZE: usize = 128 * 1024;

/// Errors setting up `--channel`; all are bad input or a host fault at start.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A running VMM already listens on the path.
    #[error("--channel {0} is in use by another running VMM; give each VM its own path")]
    InUse(PathBuf),
    /// The path cannot be bound.
    #[error("--channel {path}: cannot create the socket: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Binds `path` (mode 0600, non-blocking). A stale socket file (nobody listening) is replaced;
/// a live one is refused.
pub fn bind_channel(path: &Path) -> Result<UnixListener, ChannelError> {
    let bind_err = |source| ChannelError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = bind_replacing_stale(path).map_err(|e| match e {
        StaleBind::InUse => ChannelError::InUse(path.to_path_buf()),
        StaleBind::Io(e) => bind_err(e),
    })?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

/// Handle of the running channel thread.
#[derive(Debug)]
pub struct ChannelThread(DeviceThread);

impl ChannelThread {
    /// Starts the thread serving `console` through `listener`, under `filter` (installed before
    /// it looks at a queue).
    pub fn spawn(
        console: Arc<Console>,
        listener: UnixListener,
        mem: GuestMemoryMmap,
        filter: Option<seccompiler::BpfProgram>,
    ) -> std::io::Result<Self> {
        DeviceThread::spawn(
            "colo-chan",
            CHANNEL_STACK_SIZE,
            ThreadKind::Channel,
            filter,
            move |w, s| {
                Serve {
                    console: &console,
                    mem: &mem,
                    listener: &listener,
                    client: None,
                    client_hup: false,
                    input: HostInput::default(),
                    output: GuestOutput::default(),
                    read_buf: vec![0; super::INPUT_HOLD_MAX],
                }
                .run(w, s);
            },
        )
        .map(Self)
    }
}

impl std::ops::Deref for ChannelThread {
    type Target = DeviceThread;

    fn deref(&self) -> &DeviceThread {
        &self.0
    }
}

/// The thread's state.
struct Serve<'a> {
    console: &'a Console,
    mem: &'a GuestMemoryMmap,
    listener: &'a UnixListener,
    client: Option<OwnedFd>,
    /// The client hung up; it is polled only to read what it left.
    client_hup: bool,
    input: HostInput,
    output: GuestOutput,
    /// One read from the client: as much as may be held.
    read_buf: Vec<u8>,
}

impl Serve<'_> {
    fn run(mut self, wake: &EventFd, stop: &AtomicBool) {
        loop {
            self.pump();
            if self.client_hup && self.nothing_left() {
                self.client = None;
            }
            let want_read = self.input.is_empty() && self.console.can_receive(self.mem);
            let mut fds = vec![
                pollfd(wake.as_raw_fd(), libc::POLLIN),
                pollfd(self.console.notify.as_raw_fd(), libc::POLLIN),
            ];
            match &self.client {
                None => fds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN)),
                Some(c) => {
                    let mut events = 0;
                    if want_read {
                        events |= libc::POLLIN;
                    }
                    if !self.output.waiting().is_empty() {
                        events |= libc::POLLOUT;
                    }
                    // POLLHUP and POLLERR are reported whatever `events` says; after a hang-up
                    // the client is left out (a negative fd) until there is something to do.
                    let fd = if self.client_hup && events == 0 {
                        -1
                    } else {
                        c.as_raw_fd()
                    };
                    fds.push(pollfd(fd, events));
                }
            }
            // SAFETY: `fds` is a valid pollfd array of that length; no timeout, no signal mask.
            let rc = unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            if rc < 0 {
                continue;
            }
            if fds[0].revents != 0 {
                let _ = wake.read();
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            if fds[1].revents != 0 {
                let _ = self.console.notify.read();
            }
            let ready = fds[2].revents;
            if ready == 0 {
                continue;
            }
            if self.client.is_none() {
                self.accept();
            } else if ready & libc::POLLIN != 0 {
                self.read_client();
            } else if ready & (libc::POLLERR | libc::POLLNVAL) != 0 {
                self.client = None;
            } else if ready & libc::POLLHUP != 0 {
                // Gone, but what it sent may still wait in the socket: read it when the guest
                // can take it (the read then sees the end).
                self.client_hup = true;
            }
        }
    }

    /// Moves bytes until nothing more can move without waiting.
    fn pump(&mut self) {
        loop {
            let mut progress = self.console.collect(self.mem, &mut self.output) > 0;
            progress |= self.write_client() > 0;
            progress |= self.console.deliver(self.mem, &mut self.input) > 0;
            if !progress {
                return;
            }
        }
    }

    fn accept(&mut self) {
        // SAFETY: accept4 on our listening socket; no peer address is asked for.
        let fd = unsafe {
            libc::accept4(
                self.listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by accept4 and nothing else owns it.
            self.client = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            self.client_hup = false;
        }
    }

    /// Whether the hung-up client left nothing unread in its socket (a peek, consuming nothing).
    fn nothing_left(&self) -> bool {
        let Some(c) = &self.client else {
            return true;
        };
        let mut byte = 0u8;
        // SAFETY: one writable byte; MSG_PEEK leaves the data in the socket.
        let n = unsafe {
            libc::recv(
                c.as_raw_fd(),
                std::ptr::from_mut(&mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n == 0 || (n < 0 && !retry_later())
    }

    /// Reads at most the room left in `input` from the client; drops it at EOF or an error.
    fn read_client(&mut self) {
        let Some(c) = &self.client else {
            return;
        };
        let want = self.read_buf.len().min(self.input.room());
        if want == 0 {
            return;
        }
        let buf = self.read_buf.as_mut_ptr();
        // SAFETY: `read_buf` has at least `want` writable bytes; `c` is a connected socket.
        let n = unsafe { libc::recv(c.as_raw_fd(), buf.cast(), want, libc::MSG_DONTWAIT) };
        match n {
            n if n > 0 => self.input.push(&self.read_buf[..n as usize]),
            0 => self.client = None,
            _ if retry_later() => {}
            _ => self.client = None,
        }
    }

    /// Sends waiting guest output to the client; returns the bytes sent.
    fn write_client(&mut self) -> usize {
        let Some(c) = &self.client else {
            return 0;
        };
        let mut sent = 0;
        while !self.output.waiting().is_empty() {
            let data = self.output.waiting();
            // SAFETY: `data` is a live slice; MSG_NOSIGNAL turns a closed peer into EPIPE.
            let n = unsafe {
                libc::send(
                    c.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                self.output.consume(n as usize);
                sent += n as usize;
            } else {
                if !retry_later() {
                    self.client = None;
                }
                break;
            }
        }
        sent
    }
}

/// Whether the last socket call failed only because it would block (or was interrupted).
fn retry_later() -> bool {
    matches!(
        std::io::Error::last_os_error().kind(),
        ErrorKind::WouldBlock | ErrorKind::Interrupted
    )
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
