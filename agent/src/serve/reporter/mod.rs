//! The reporter: streams this node's `NodeReport`s to colo-scheduler.
//!
//! The QoS loop hands over a snapshot with [`ReporterHandle::publish`], which never blocks (it
//! replaces the value in a `watch` channel). A background task turns snapshots into numbered
//! reports — one every `interval`, and at once on a [significant change](SignificantChange) —
//! and streams them over one long-lived gRPC stream (`NodeReports.StreamReports`).
//!
//! Delivery: every report gets the next per-node sequence number and waits in a bounded buffer
//! until colo-scheduler acknowledges it (acks are cumulative: the highest sequence stored). When
//! the stream breaks, the reporter reconnects with exponential backoff and jitter and resends
//! what is still unacknowledged, in order; the scheduler ignores duplicates. When the buffer is
//! full the oldest report is dropped and counted (the scheduler then sees a sequence gap). A
//! stream that opens with nothing to resend gets a fresh report at once, so a colo-scheduler
//! that restarted (and lost its table) knows the node without waiting for the next tick.
//!
//! The QoS loop builds the snapshot ([`crate::qos::report::node_report`]) from raw measurements
//! with colo-policy's scoring, so the agent reports exactly what the scheduler and the simulator
//! compute. The connection itself (buffer, backoff, resend) is `task.rs`.
//!
//! To an `https://` endpoint the reporter speaks mutual TLS ([`ReporterTls`]): colo-scheduler
//! accepts a report only for the node the agent's certificate names.

mod task;
mod tls;

pub use tls::{ReporterTls, TlsFileError};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use colo_proto::report::{self, NodeReport};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::qos::report::ReportSink;
use task::Task;

/// Counter: reports produced (numbered).
pub const METRIC_PRODUCED: &str = "colo_agent_reports_produced_total";
/// Counter: reports dropped from the full buffer before the scheduler acknowledged them.
pub const METRIC_DROPPED: &str = "colo_agent_reports_dropped_total";
/// Counter: connections made to colo-scheduler.
pub const METRIC_CONNECTS: &str = "colo_agent_reporter_connects_total";
/// Gauge: 1 while a report stream is open.
pub const METRIC_CONNECTED: &str = "colo_agent_reporter_connected";

/// A reporter that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReporterError {
    /// The scheduler address is not a URI.
    #[error(
        "invalid colo-scheduler endpoint {endpoint:?}: {source}; write it as \
         http://host:port (default port 9470)"
    )]
    Endpoint {
        /// The address as configured.
        endpoint: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS material cannot be read.
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    /// The TLS material cannot be used.
    #[error("TLS to colo-scheduler: {source}; check scheduler.tls in agent.yaml")]
    Tls {
        /// What tonic says.
        #[source]
        source: tonic::transport::Error,
    },
    /// A setting is out of range.
    #[error("reporter setting {field} = {value} is invalid: {rule}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must satisfy.
        rule: &'static str,
    },
}

/// When a new snapshot is reported at once rather than at the next interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignificantChange {
    /// The interference score moved by at least this many points (0..100). Default 10.
    pub score_points: f64,
    /// The batch budget (reclaimable) or batch usage moved by at least this share of capacity,
    /// for CPU or memory. Default 0.1.
    pub capacity_share: f64,
}

impl Default for SignificantChange {
    fn default() -> Self {
        Self {
            score_points: 10.0,
            capacity_share: 0.1,
        }
    }
}

impl SignificantChange {
    /// True when `new` differs enough from the last report sent, `old`, to be reported at once:
    /// the batch verdict flipped, the capacity changed, the interference score moved by
    /// `score_points`, or the batch budget or batch usage moved by `capacity_share` of capacity.
    #[must_use]
    pub fn between(&self, old: &NodeReport, new: &NodeReport) -> bool {
        if old.refuses_batch != new.refuses_batch || old.capacity != new.capacity {
            return true;
        }
        let score = |r: &NodeReport| r.interference.as_ref().map_or(0.0, |i| i.score);
        if (score(new) - score(old)).abs() >= self.score_points {
            return true;
        }
        let cap = new.capacity.unwrap_or_default();
        let moved = |a: Option<report::Resources>, b: Option<report::Resources>| {
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            #[allow(clippy::cast_precision_loss)]
            let share = |x: u64, y: u64, c: u64| {
                c > 0 && x.abs_diff(y) as f64 >= self.capacity_share * c as f64
            };
            share(a.cpu_millicores, b.cpu_millicores, cap.cpu_millicores)
                || share(a.memory_bytes, b.memory_bytes, cap.memory_bytes)
        };
        moved(old.reclaimable, new.reclaimable) || moved(old.offline_usage, new.offline_usage)
    }
}

/// Reporter settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ReporterConfig {
    /// colo-scheduler's gRPC address: `https://colo-scheduler.colo-system.svc:9470` with
    /// `tls`, or `http://127.0.0.1:9470` without.
    pub endpoint: String,
    /// Mutual TLS, required for (and only for) an `https://` endpoint.
    pub tls: Option<ReporterTls>,
    /// A report at least this often. Default 10 s.
    pub interval: Duration,
    /// Reports kept until acknowledged; beyond this the oldest is dropped. Default 64.
    pub buffer: usize,
    /// Shortest time between two reports sent early on significant changes. Default 1 s.
    pub min_gap: Duration,
    /// First reconnect delay; doubles per failure. Default 500 ms.
    pub backoff_initial: Duration,
    /// Longest reconnect delay. Default 30 s.
    pub backoff_max: Duration,
    /// Limit on connecting and opening the stream. Default 5 s.
    pub connect_timeout: Duration,
    /// What counts as a significant change.
    pub significant: SignificantChange,
}

impl ReporterConfig {
    /// The defaults, reporting to `endpoint`.
    #[must_use]
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: None,
            interval: Duration::from_secs(10),
            buffer: 64,
            min_gap: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            significant: SignificantChange::default(),
        }
    }
}

/// What the reporter has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReporterStats {
    /// Reports produced; the last one's sequence number.
    pub produced: u64,
    /// Highest sequence number colo-scheduler acknowledged.
    pub acked: u64,
    /// Reports dropped from the full buffer.
    pub dropped: u64,
    /// Streams opened.
    pub connects: u64,
    /// True while a stream is open.
    pub connected: bool,
}

#[derive(Debug, Default)]
struct SharedStats {
    produced: AtomicU64,
    acked: AtomicU64,
    dropped: AtomicU64,
    connects: AtomicU64,
    connected: AtomicBool,
}

/// The cheap, cloneable side the QoS loop holds.
#[derive(Debug, Clone)]
pub struct ReporterHandle {
    snapshots: Arc<watch::Sender<Option<NodeReport>>>,
    stats: Arc<SharedStats>,
}

impl ReporterHandle {
    /// Hands over the node's current state. Never blocks and never fails: the reporter takes the
    /// latest snapshot when it next reports (its `seq`, `timestamp_unix_ms` and
    /// `agent_start_unix_ms` are set by the reporter).
    pub fn publish(&self, snapshot: NodeReport) {
        self.snapshots.send_replace(Some(snapshot));
    }

    /// The latest snapshot published (without the reporter's sequence number). Local views
    /// (NodeStatus, the Koordinator NodeMetric) read the QoS loop's `LatestSnapshot` instead,
    /// which exists also without a colo-scheduler.
    #[must_use]
    pub fn latest(&self) -> Option<NodeReport> {
        self.snapshots.borrow().clone()
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> ReporterStats {
        let s = &self.stats;
        ReporterStats {
            produced: s.produced.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }
}

impl ReportSink for ReporterHandle {
    fn publish(&self, report: NodeReport) {
        ReporterHandle::publish(self, report);
    }
}

/// The running reporter task.
#[derive(Debug)]
pub struct Reporter {
    handle: ReporterHandle,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

impl Reporter {
    /// Starts the reporter on the current tokio runtime. It connects in the background: a
    /// scheduler that is down is not an error, only a reason to retry.
    ///
    /// # Errors
    /// [`ReporterError`] when the endpoint is not a URI, a setting is out of range, or the TLS
    /// material cannot be read or does not go with the endpoint's scheme.
    pub fn spawn(config: ReporterConfig) -> Result<Self, ReporterError> {
        if config.buffer == 0 {
            return Err(ReporterError::Setting {
                field: "buffer",
                value: "0".into(),
                rule: "keep at least one report",
            });
        }
        if config.interval.is_zero() {
            return Err(ReporterError::Setting {
                field: "interval",
                value: "0s".into(),
                rule: "must be above zero (default 10s)",
            });
        }
        let https = config.endpoint.starts_with("https://");
        if https != config.tls.is_some() {
            return Err(ReporterError::Setting {
                field: "tls",
                value: if https { "none" } else { "set" }.into(),
                rule: "an https:// endpoint needs the TLS files (colo-scheduler serves mutual \
                       TLS), and the TLS files need an https:// endpoint",
            });
        }
        let endpoint = endpoint(&config)?;
        let (snapshots, rx) = watch::channel(None);
        let handle = ReporterHandle {
            snapshots: Arc::new(snapshots),
            stats: Arc::new(SharedStats::default()),
        };
        let (stop, stop_rx) = watch::channel(None);
        let task =
            tokio::spawn(Task::new(config, endpoint, rx, stop_rx, Arc::clone(&handle.stats)).run());
        Ok(Self { handle, stop, task })
    }

    /// The publishing side, for the QoS loop.
    #[must_use]
    pub fn handle(&self) -> ReporterHandle {
        self.handle.clone()
    }

    /// Stops producing reports, waits up to `flush` for the scheduler to acknowledge what was
    /// already produced, then closes the stream. Returns the final counters.
    pub async fn shutdown(self, flush: Duration) -> ReporterStats {
        let _ = self.stop.send(Some(flush));
        if let Err(e) = self.task.await {
            tracing::warn!("reporter task ended abnormally: {e}");
        }
        self.handle.stats()
    }
}

/// The endpoint to connect to, with the TLS files read now.
pub(super) fn endpoint(config: &ReporterConfig) -> Result<Endpoint, ReporterError> {
    let endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|source| ReporterError::Endpoint {
            endpoint: config.endpoint.clone(),
            source,
        })?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    match &config.tls {
        Some(tls) => endpoint
            .tls_config(tls.client_config()?)
            .map_err(|source| ReporterError::Tls { source }),
        None => Ok(endpoint),
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    use colo_policy::scoring::{Admission, ScoringParams};

    use super::task::Jitter;
    use crate::qos::report::node_report;
    use crate::qos::report::tests::{GIB, inputs};

    #[test]
    fn significant_changes() {
        let p = ScoringParams::default();
        let sig = SignificantChange::default();
        let (base, _) = node_report(&inputs(0.0), &p, Admission::Accepting);
        assert!(!sig.between(&base, &base));
        let (slightly, _) = node_report(&inputs(30.0), &p, Admission::Accepting);
        assert!(!sig.between(&base, &slightly), "score moved < 10 points");
        let (more, _) = node_report(&inputs(60.0), &p, Admission::Accepting);
        assert!(sig.between(&base, &more), "score moved ≥ 10 points");

        let mut busier = inputs(0.0);
        busier.online_usage.cpu_millicores += 1_500;
        let (b, _) = node_report(&busier, &p, Admission::Accepting);
        assert!(!sig.between(&base, &b), "1.5 of 16 cores is under 10 %");
        busier.online_usage.cpu_millicores += 200;
        let (b, _) = node_report(&busier, &p, Admission::Accepting);
        assert!(sig.between(&base, &b), "1.7 of 16 cores is over 10 %");

        let mut flipped = base.clone();
        flipped.refuses_batch = true;
        assert!(sig.between(&base, &flipped));
        let mut batch = inputs(0.0);
        batch.offline_usage.memory_bytes += 7 * GIB;
        let (b, _) = node_report(&batch, &p, Admission::Accepting);
        assert!(sig.between(&base, &b), "batch usage moved 7 of 64 GiB");
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let mut j = Jitter::seeded("x");
        let d = Duration::from_millis(1_000);
        let mut seen = (Duration::MAX, Duration::ZERO);
        for _ in 0..1_000 {
            let s = j.spread(d);
            assert!(s >= d / 2 && s <= d, "{s:?}");
            seen = (seen.0.min(s), seen.1.max(s));
        }
        assert!(seen.0 < Duration::from_millis(600) && seen.1 > Duration::from_millis(900));
    }

    #[tokio::test]
    async fn bad_settings_are_refused() {
        let mut c = ReporterConfig::new("not a uri");
        assert!(matches!(
            Reporter::spawn(c.clone()),
            Err(ReporterError::Endpoint { .. })
        ));
        c.endpoint = "http://127.0.0.1:9".into();
        c.buffer = 0;
        let e = Reporter::spawn(c).unwrap_err();
        assert!(e.to_string().contains("buffer"), "{e}");
    }
}
