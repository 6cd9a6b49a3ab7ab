//! Process signals: SIGTERM and SIGINT end the VM through a signalfd read by the main thread;
//! SIGHUP is ignored so the VMM outlives the terminal or session that started it.

use std::os::fd::{FromRawFd, OwnedFd};

/// A signalfd for SIGTERM and SIGINT, which are blocked in every thread started afterwards.
#[derive(Debug)]
pub struct TerminationSignals {
    fd: OwnedFd,
}

impl TerminationSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread (and threads it starts later), ignores
    /// SIGHUP, and opens the signalfd.
    pub fn install() -> std::io::Result<Self> {
        // SAFETY: plain libc signal-mask calls on a local sigset; SIG_IGN for SIGHUP is always
        // valid; signalfd returns a new descriptor we own or -1.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Self {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The name of a pending signal, if one arrived.
    pub fn read(&self) -> Option<&'static str> {
        let mut info = std::mem::MaybeUninit::<libc::signalfd_siginfo>::zeroed();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into a buffer of that size from our own signalfd.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                info.as_mut_ptr().cast(),
                size,
            )
        };
        if n != size as isize {
            return None;
        }
        // SAFETY: the kernel filled the whole struct (n == size).
        let signo = unsafe { info.assume_init() }.ssi_signo as i32;
        Some(match signo {
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            _ => "a signal",
        })
    }
}
