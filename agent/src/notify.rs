//! The systemd notify protocol (`Type=notify`): READY=1 once the API socket is served, STATUS
//! lines, WATCHDOG=1 at half of `WATCHDOG_USEC`, STOPPING=1 on shutdown. Without
//! `NOTIFY_SOCKET` every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to the service manager.
#[derive(Debug, Clone)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        Self {
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// READY=1 with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A STATUS line (shown by `systemctl status`).
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// RELOADING=1 ... READY=1 around a policy reload is not used: the reload is atomic.
    /// STOPPING=1 when shutting down.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// How often to send WATCHDOG=1: half of `WATCHDOG_USEC`, or None without a watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// WATCHDOG=1.
    pub fn ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}
