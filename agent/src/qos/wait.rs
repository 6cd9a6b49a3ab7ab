//! How the loop's thread waits between ticks: a timed wait on a condition variable, woken
//! early by a PSI trigger, by a pushed SLI batch that breaches its target, or by shutdown.
//!
//! The loop runs on a thread of its own (tokio's blocking pool) instead of as an async task:
//! a tokio timer tick wakes the runtime's I/O driver (`epoll_wait`) on one worker, which then
//! often wakes the other worker through its eventfd; a timed futex wait on the loop's own
//! thread is one wake-up per tick and nothing else.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The deadline passed.
    Timer,
    /// A PSI trigger fired.
    Psi,
    /// A pushed SLI batch breached its service's target.
    Sli,
    /// The loop is to stop.
    Stop,
}

#[derive(Debug, Default)]
struct Flags {
    psi: bool,
    sli: bool,
    stop: bool,
}

/// The loop thread's wake-up signal.
#[derive(Debug, Default)]
pub struct Signal {
    flags: Mutex<Flags>,
    cv: Condvar,
}

impl Signal {
    /// Wakes the loop for an early tick.
    pub fn psi(&self) {
        self.set(|f| f.psi = true);
    }

    /// Wakes the loop for an early tick: an SLI breach was pushed.
    pub fn sli(&self) {
        self.set(|f| f.sli = true);
    }

    /// Stops the loop.
    pub fn stop(&self) {
        self.set(|f| f.stop = true);
    }

    fn set(&self, f: impl FnOnce(&mut Flags)) {
        f(&mut self.flags.lock().unwrap_or_else(|p| p.into_inner()));
        self.cv.notify_one();
    }

    /// Waits until `deadline`, an early wake-up or a stop, whichever comes first (a stop wins).
    pub fn wait_until(&self, deadline: Instant) -> Woken {
        let mut f = self.flags.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if f.stop {
                return Woken::Stop;
            }
            if std::mem::take(&mut f.psi) {
                return Woken::Psi;
            }
            if std::mem::take(&mut f.sli) {
                return Woken::Sli;
            }
            let now = Instant::now();
            if now >= deadline {
                return Woken::Timer;
            }
            f = self
                .cv
                .wait_timeout(f, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Stops the loop when dropped.
#[derive(Debug)]
pub struct StopOnDrop(pub Arc<Signal>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The next tick's deadline after a tick that was due at `due` and started at `now`: one
/// period after `due`, or one period after `now` when the tick ran late (missed ticks are not
/// caught up).
pub fn next_deadline(due: Instant, now: Instant, period: Duration) -> Instant {
    let next = due + period;
    if next <= now { now + period } else { next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_psi_and_stop() {
        let s = Arc::new(Signal::default());
        let t0 = Instant::now();
        assert_eq!(s.wait_until(t0 + Duration::from_millis(20)), Woken::Timer);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        let s2 = s.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s2.psi();
        });
        let t1 = Instant::now();
        assert_eq!(s.wait_until(t1 + Duration::from_secs(30)), Woken::Psi);
        assert!(t1.elapsed() < Duration::from_secs(20));
        h.join().unwrap();
        // A PSI wake-up is taken once.
        assert_eq!(s.wait_until(Instant::now()), Woken::Timer);
        s.sli();
        assert_eq!(
            s.wait_until(Instant::now() + Duration::from_secs(30)),
            Woken::Sli
        );
        s.psi();
        s.stop();
        assert_eq!(
            s.wait_until(Instant::now() + Duration::from_secs(30)),
            Woken::Stop
        );
        assert_eq!(
            s.wait_until(Instant::now() + Duration::from_secs(30)),
            Woken::Stop
        );
    }

    #[test]
    fn late_ticks_are_not_caught_up() {
        let t = Instant::now();
        let p = Duration::from_millis(50);
        assert_eq!(next_deadline(t, t + Duration::from_millis(3), p), t + p);
        let late = t + Duration::from_millis(120);
        assert_eq!(next_deadline(t, late, p), late + p);
    }
}
