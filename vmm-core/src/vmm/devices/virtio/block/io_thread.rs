//! The IO thread (`colo-io`): runs every disk request of the VM, so the agent can put all of a
//! VM's disk IO in one cgroup. It sleeps in `ppoll` on the disks' ioeventfds and a wake-up
//! eventfd, with a timeout when a token bucket holds a request back.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::super::device_thread::DeviceThread;
use super::{Disk, QueueState};
use crate::seccomp::ThreadKind;

/// Stack of the IO thread.
const IO_STACK_SIZE: usize = 256 * 1024;

/// Handle of the running IO thread.
#[derive(Debug)]
pub struct IoThread(DeviceThread);

impl IoThread {
    /// Starts the thread serving `disks`, under `filter` (installed before it serves anything).
    pub fn spawn(
        disks: Vec<Arc<Disk>>,
        mem: GuestMemoryMmap,
        filter: Option<seccompiler::BpfProgram>,
    ) -> std::io::Result<Self> {
        DeviceThread::spawn(
            "colo-io",
            IO_STACK_SIZE,
            ThreadKind::Io,
            filter,
            move |w, s| serve(&disks, &mem, w, s),
        )
        .map(Self)
    }
}

impl std::ops::Deref for IoThread {
    type Target = DeviceThread;

    fn deref(&self) -> &DeviceThread {
        &self.0
    }
}

fn serve(disks: &[Arc<Disk>], mem: &GuestMemoryMmap, wake: &EventFd, stop: &AtomicBool) {
    let mut throttled: Vec<Option<Instant>> = vec![None; disks.len()];
    let mut fds: Vec<libc::pollfd> = std::iter::once(wake.as_raw_fd())
        .chain(disks.iter().map(|d| d.notify.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let now = Instant::now();
        let timeout = throttled
            .iter()
            .flatten()
            .map(|t| t.saturating_duration_since(now))
            .min();
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
        });
        for f in &mut fds {
            f.revents = 0;
        }
        // SAFETY: `fds` is a valid pollfd array; `ts` (if any) outlives the call.
        let rc = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                std::ptr::null(),
            )
        };
        if rc < 0 {
            continue;
        }
        let woken = fds[0].revents != 0;
        if woken {
            let _ = wake.read();
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
        let now = Instant::now();
        for (i, disk) in disks.iter().enumerate() {
            let notified = fds[i + 1].revents != 0;
            if notified {
                let _ = disk.notify.read();
            }
            let due = throttled[i].is_some_and(|t| t <= now);
            if notified || due || woken {
                throttled[i] = match disk.process_queue(mem) {
                    QueueState::Idle => None,
                    QueueState::Throttled(wait) => Some(Instant::now() + wait),
                };
            }
        }
    }
}
