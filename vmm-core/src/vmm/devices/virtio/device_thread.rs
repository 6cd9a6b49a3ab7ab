//! A device's own thread (`colo-io` for the disks, `colo-chan` for the console): named, with a
//! small stack, its seccomp filter installed before it looks at anything the guest wrote, its
//! thread id reported back (the agent moves it into the job's cgroup), and a wake-up eventfd and
//! stop flag for the VMM to reach it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use crate::seccomp::ThreadKind;

/// Handle of a running device thread.
#[derive(Debug)]
pub struct DeviceThread {
    /// Its thread id.
    pub tid: u32,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    _handle: JoinHandle<()>,
}

impl DeviceThread {
    /// Starts thread `name` of `kind` with `stack` bytes of stack; it installs `filter` (if
    /// any), reports its id, then runs `body` with the wake-up eventfd and the stop flag. Fails
    /// if the thread cannot start, its filter is refused, or it does not report within 10 s.
    pub fn spawn<F>(
        name: &str,
        stack: usize,
        kind: ThreadKind,
        filter: Option<seccompiler::BpfProgram>,
        body: F,
    ) -> std::io::Result<Self>
    where
        F: FnOnce(&EventFd, &AtomicBool) + Send + 'static,
    {
        let wake = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = crossbeam_channel::bounded(1);
        let (w, s) = (wake.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(name.into())
            .stack_size(stack)
            .spawn(move || {
                // The filter goes on before the first look at a queue the guest wrote.
                if let Some(f) = &filter
                    && let Err(e) = crate::seccomp::install(kind, f)
                {
                    let _ = tid_tx.send(Err(e.to_string()));
                    return;
                }
                // SAFETY: gettid has no preconditions.
                let _ = tid_tx.send(Ok(unsafe { libc::gettid() } as u32));
                body(&w, &s);
            })?;
        let tid = tid_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| std::io::Error::other(format!("the {name} thread did not start")))?
            .map_err(std::io::Error::other)?;
        Ok(Self {
            tid,
            wake,
            stop,
            _handle: handle,
        })
    }

    /// Makes the thread look at its queues again.
    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Asks the thread to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }
}
