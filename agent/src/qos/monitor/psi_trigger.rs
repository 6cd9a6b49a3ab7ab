//! PSI triggers: the kernel wakes the loop as soon as stall time within a moving window crosses
//! a threshold (`some <stall µs> <window µs>` written to a pressure file, then `POLLPRI`).
//!
//! The kernel fires a trigger at most once per window. Windows under 2 s need
//! `CAP_SYS_RESOURCE`; without it the kernel accepts only whole multiples of 2 s, so the arming
//! falls back to a 2 s window (same stall share) and says so.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::MonitorError;

/// `CAP_SYS_RESOURCE` (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

/// Windows an unprivileged writer may use are whole multiples of this.
const UNPRIVILEGED_WINDOW: Duration = Duration::from_secs(2);

/// One armed trigger.
#[derive(Debug)]
pub struct ArmedTrigger {
    /// The pressure file.
    pub path: PathBuf,
    /// The stall threshold in force.
    pub stall: Duration,
    /// The window in force (may be longer than asked, see the module docs).
    pub window: Duration,
    fd: OwnedFd,
}

/// Whether this process has `CAP_SYS_RESOURCE` in its effective set.
pub fn has_cap_sys_resource() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

fn write_trigger(path: &Path, stall: Duration, window: Duration) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    // The kernel overwrites the last byte written with NUL: end the text with one.
    let text = format!("some {} {}\0", stall.as_micros(), window.as_micros());
    f.write_all(text.as_bytes())?;
    Ok(OwnedFd::from(f))
}

/// Arms a `some` trigger on the pressure file `path`: `stall` within `window`.
pub fn arm(path: &Path, stall: Duration, window: Duration) -> Result<ArmedTrigger, MonitorError> {
    let err = |e: std::io::Error, window: Duration, stall: Duration| MonitorError::PsiTrigger {
        path: path.to_path_buf(),
        spec: format!("some {}us {}us", stall.as_micros(), window.as_micros()),
        error: e.to_string(),
        fix: if window < UNPRIVILEGED_WINDOW && !has_cap_sys_resource() {
            "windows under 2s need CAP_SYS_RESOURCE (AmbientCapabilities= in the unit)"
        } else {
            "check loop.psi_trigger_window and loop.psi_trigger_stall (kernels before 6.5 need a \
             window of at least 500ms; the stall must be below the window)"
        },
    };
    match write_trigger(path, stall, window) {
        Ok(fd) => Ok(ArmedTrigger {
            path: path.to_path_buf(),
            stall,
            window,
            fd,
        }),
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL)
                && window < UNPRIVILEGED_WINDOW
                && !has_cap_sys_resource() =>
        {
            // Keep the stall share, in the smallest window allowed without the capability.
            let share = stall.as_secs_f64() / window.as_secs_f64().max(1e-6);
            let w = UNPRIVILEGED_WINDOW;
            let s = Duration::from_secs_f64((share * w.as_secs_f64()).clamp(1e-3, w.as_secs_f64()));
            let fd = write_trigger(path, s, w).map_err(|e| err(e, w, s))?;
            tracing::warn!(path = %path.display(), asked_window = ?window, window = ?w, stall = ?s,
                "PSI trigger window raised to 2s: shorter windows need CAP_SYS_RESOURCE");
            Ok(ArmedTrigger {
                path: path.to_path_buf(),
                stall: s,
                window: w,
                fd,
            })
        }
        Err(e) => Err(err(e, window, stall)),
    }
}

impl ArmedTrigger {
    /// Waits for the trigger's events on the current tokio runtime and calls `wake.notify_one()`
    /// for each; returns when the file reports an error (the cgroup was removed).
    pub async fn forward(self, wake: Arc<Notify>) {
        let path = self.path.clone();
        // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open (and the same
        // descriptor) until it is dropped.
        let fd = match unsafe { AsyncFd::register_with_interest(self.fd, Interest::PRIORITY) } {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot poll a PSI trigger");
                return;
            }
        };
        loop {
            match fd.ready(Interest::PRIORITY).await {
                Ok(mut guard) => {
                    if guard.ready().is_read_closed() {
                        tracing::debug!(path = %path.display(), "PSI trigger closed");
                        return;
                    }
                    wake.notify_one();
                    guard.clear_ready();
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "PSI trigger poll failed");
                    return;
                }
            }
        }
    }

    /// The raw descriptor (for tests).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_arms_or_names_the_capability() {
        let p = Path::new("/proc/pressure/cpu");
        if !p.exists() {
            eprintln!("SKIPPED: no /proc/pressure on this kernel");
            return;
        }
        // 50 ms in 500 ms: armed as asked with CAP_SYS_RESOURCE, else as 200 ms in 2 s.
        let t = arm(p, Duration::from_millis(50), Duration::from_millis(500)).unwrap();
        if has_cap_sys_resource() {
            assert_eq!(t.window, Duration::from_millis(500));
        } else {
            assert_eq!(t.window, Duration::from_secs(2));
            assert_eq!(t.stall, Duration::from_millis(200));
        }
        assert!(t.raw_fd() >= 0);
        // A stall above the window is refused with a message naming the settings.
        let e = arm(p, Duration::from_secs(3), Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("loop.psi_trigger"), "{e}");
    }

    #[tokio::test]
    async fn a_trigger_wakes_on_cpu_stall() {
        let p = Path::new("/proc/pressure/cpu");
        if !p.exists() {
            eprintln!("SKIPPED: no /proc/pressure on this kernel");
            return;
        }
        let _lock = colo_testkit::host_lock();
        // 1 ms of stall in the window: three busy threads per CPU stall the CPU at once.
        let t = arm(p, Duration::from_millis(1), Duration::from_secs(2)).unwrap();
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(t.forward(wake.clone()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = 3 * std::thread::available_parallelism().map_or(2, |n| n.get());
        let burners: Vec<_> = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let fired = tokio::time::timeout(Duration::from_secs(10), wake.notified()).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for b in burners {
            b.join().unwrap();
        }
        task.abort();
        assert!(fired.is_ok(), "the trigger fired within 10 s of CPU stall");
    }
}
