//! What the QoS loop shares with the API: the view it publishes for NodeStatus and the inbox
//! of latency values online services push (`ReportSli`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// What the QoS loop publishes for NodeStatus (filled in by the QoS loop; defaults until then).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QosView {
    /// Interference score 0..100.
    pub interference_score: f64,
    /// Current offline-group CPU quota in millicores (0 = unlimited).
    pub offline_cpu_quota_millicores: u64,
}

/// Latency values pushed by online services (`ReportSli`), kept for the QoS loop.
///
/// A batch that by itself breaches its service's SLO (more than 1 % of its values above the
/// p99 target) wakes the loop for an early tick, as a PSI trigger does, at most once per
/// [`SliInbox::MIN_WAKE_GAP`]; other batches wait for the next tick.
#[derive(Default)]
pub struct SliInbox {
    values: Mutex<HashMap<String, VecDeque<u64>>>,
    pending: AtomicBool,
    early: OnceLock<EarlyWake>,
}

/// What [`SliInbox::arm`] installs: each pushed service's p99 target (µs) and the wake-up.
struct EarlyWake {
    targets: HashMap<String, u64>,
    wake: Box<dyn Fn() + Send + Sync>,
    last: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for SliInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliInbox")
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .field("armed", &self.early.get().is_some())
            .finish_non_exhaustive()
    }
}

impl SliInbox {
    /// Most values kept per service between two drains.
    pub const CAPACITY: usize = 65_536;

    /// Least time between two early wake-ups of the loop.
    pub const MIN_WAKE_GAP: std::time::Duration = std::time::Duration::from_millis(10);

    /// Installs the services' p99 targets (µs) and how to wake the loop; once (later calls
    /// are ignored).
    pub fn arm(&self, targets: HashMap<String, u64>, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.early.set(EarlyWake {
            targets,
            wake,
            last: Mutex::new(None),
        });
    }

    /// Adds values for `service`; the oldest are dropped beyond the capacity.
    pub fn push(&self, service: &str, latency_us: &[u64]) {
        self.push_at(service, latency_us, Instant::now());
    }

    /// [`push`](Self::push) at the instant `now` (which rate-limits the early wake-ups).
    fn push_at(&self, service: &str, latency_us: &[u64], now: Instant) {
        {
            let mut m = self.values.lock().unwrap_or_else(|p| p.into_inner());
            let q = m.entry(service.to_string()).or_default();
            q.extend(latency_us.iter().copied());
            while q.len() > Self::CAPACITY {
                q.pop_front();
            }
        }
        self.pending.store(true, Ordering::Release);
        let Some(e) = self.early.get() else {
            return;
        };
        let Some(&target) = e.targets.get(service) else {
            return;
        };
        let over = latency_us.iter().filter(|&&v| v > target).count();
        if over == 0 || over * 100 <= latency_us.len() {
            return;
        }
        let mut last = e.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.saturating_duration_since(t) < Self::MIN_WAKE_GAP) {
            return;
        }
        *last = Some(now);
        (e.wake)();
    }

    /// Whether values were pushed since the last call (and clears that).
    pub fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Takes every value pushed for `service` since the last drain.
    pub fn drain(&self, service: &str) -> Vec<u64> {
        let mut m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        m.get_mut(service)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn armed() -> (SliInbox, Arc<AtomicUsize>) {
        let inbox = SliInbox::default();
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        inbox.arm(
            HashMap::from([("web".to_string(), 1_000)]),
            Box::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        );
        (inbox, wakes)
    }

    #[test]
    fn a_breaching_batch_wakes_the_loop_and_others_wait_for_the_tick() {
        let (inbox, wakes) = armed();
        assert!(!inbox.take_pending());
        // Within target, or 1 % over it (p99 still at target): no early wake, but pending.
        inbox.push("web", &[500; 10]);
        let mut batch = vec![500; 99];
        batch.push(5_000);
        inbox.push("web", &batch);
        assert_eq!(wakes.load(Ordering::SeqCst), 0);
        assert!(inbox.take_pending());
        assert!(!inbox.take_pending(), "pending is taken once");
        assert_eq!(inbox.drain("web").len(), 110);
        // Over target in more than 1 % of the batch: wakes once.
        let t0 = Instant::now();
        inbox.push_at("web", &[5_000; 20], t0);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        // Again within MIN_WAKE_GAP: no second wake-up.
        let just_under = SliInbox::MIN_WAKE_GAP - std::time::Duration::from_micros(1);
        inbox.push_at("web", &[5_000; 20], t0 + just_under);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        inbox.push_at("web", &[5_000; 20], t0 + SliInbox::MIN_WAKE_GAP);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        // A service without a pushed SLO never wakes the loop.
        inbox.push("other", &[1_000_000; 20]);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(inbox.drain("other").len(), 20);
    }

    #[test]
    fn an_unarmed_inbox_only_keeps_values() {
        let inbox = SliInbox::default();
        inbox.push("web", &[5_000; 20]);
        assert!(inbox.take_pending());
        assert_eq!(inbox.drain("web"), vec![5_000; 20]);
        assert!(inbox.drain("web").is_empty());
    }
}
