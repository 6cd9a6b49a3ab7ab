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
//! [`node_report`] builds the snapshot from raw measurements with colo-policy's scoring, so the
//! agent reports exactly what the scheduler and the simulator compute.
//!
//! To an `https://` endpoint the reporter speaks mutual TLS ([`ReporterTls`]): colo-scheduler
//! accepts a report only for the node the agent's certificate names.

mod tls;

pub use tls::{ReporterTls, TlsFileError};

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use colo_policy::scoring::{
    Admission, InterferenceSignals, Resources, ScoringParams, batch_admission, headroom,
    interference_score, reclaimable,
};
use colo_proto::report::node_reports_client::NodeReportsClient;
use colo_proto::report::{self, NodeReport, ReportAck};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

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
        let task = tokio::spawn(
            Task {
                jitter: Jitter::seeded(&config.endpoint),
                config,
                endpoint,
                snapshots: rx,
                stop: stop_rx,
                stats: Arc::clone(&handle.stats),
                agent_start_unix_ms: unix_ms(),
                seq: 0,
                last: None,
                last_at: None,
                buffer: VecDeque::new(),
                conn: None,
            }
            .run(),
        );
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
fn endpoint(config: &ReporterConfig) -> Result<Endpoint, ReporterError> {
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

/// Equal jitter for backoff delays (a delay in `[d/2, d]`), from a small xorshift generator:
/// no cryptographic quality needed, only agents that do not reconnect in lockstep.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn seeded(salt: &str) -> Self {
        let mut x = u64::from(std::process::id()) ^ unix_ms().unsigned_abs().rotate_left(17);
        for b in salt.bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self(x | 1)
    }

    fn spread(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + 0.5 * unit)
    }
}

type Opening = Pin<Box<dyn Future<Output = Result<Box<Streaming<ReportAck>>, String>> + Send>>;

/// The stream to colo-scheduler: reports go into `tx` at once (the transport drains it), acks
/// come back once the stream is open.
struct Conn {
    tx: mpsc::Sender<NodeReport>,
    state: ConnState,
}

enum ConnState {
    /// Connecting and opening the stream; `tx` already queues reports for it.
    Opening(Opening),
    /// Open: acknowledgements arrive here.
    Open(Box<Streaming<ReportAck>>),
}

/// What happened on the connection.
enum ConnEvent {
    Opened(Box<Streaming<ReportAck>>),
    Ack(u64),
    Broken(String),
}

struct Task {
    config: ReporterConfig,
    endpoint: Endpoint,
    snapshots: watch::Receiver<Option<NodeReport>>,
    stop: watch::Receiver<Option<Duration>>,
    stats: Arc<SharedStats>,
    jitter: Jitter,
    agent_start_unix_ms: i64,
    seq: u64,
    /// The last report produced, to judge significance.
    last: Option<NodeReport>,
    last_at: Option<Instant>,
    /// Produced, not yet acknowledged, oldest first.
    buffer: VecDeque<NodeReport>,
    conn: Option<Conn>,
}

impl Task {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut backoff = self.config.backoff_initial;
        let mut reconnect_at = Instant::now();
        // A significant change that arrived within `min_gap` of the last report waits for this.
        let mut early_at: Option<Instant> = None;
        loop {
            let idle = self.conn.is_none();
            let conn = self.conn.as_mut();
            tokio::select! {
                biased;
                // A stop request, or the Reporter dropped without one.
                _ = self.stop.changed() => break,
                event = next_event(conn) => match event {
                    ConnEvent::Opened(acks) => {
                        if let Some(c) = &mut self.conn {
                            c.state = ConnState::Open(acks);
                        }
                        self.opened();
                    }
                    ConnEvent::Ack(seq) => {
                        self.acknowledge(seq);
                        backoff = self.config.backoff_initial;
                    }
                    ConnEvent::Broken(e) => {
                        tracing::info!(endpoint = %self.config.endpoint, "report stream to colo-scheduler: {e}");
                        self.disconnect();
                        reconnect_at = Instant::now() + self.jitter.spread(backoff);
                        backoff = (backoff * 2).min(self.config.backoff_max);
                    }
                },
                _ = tokio::time::sleep_until(reconnect_at), if idle => self.connect(),
                _ = tick.tick() => {
                    early_at = None;
                    self.produce();
                }
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        // Every handle is gone: nothing more will be published.
                        break;
                    }
                    if self.significant() {
                        let at = self.last_at.map_or_else(Instant::now, |t| t + self.config.min_gap);
                        if at <= Instant::now() {
                            self.produce();
                            tick.reset();
                        } else {
                            early_at = Some(at);
                        }
                    }
                }
                _ = sleep_until_opt(early_at) => {
                    early_at = None;
                    self.produce();
                    tick.reset();
                }
            }
        }
        let flush = (*self.stop.borrow()).unwrap_or_default();
        self.flush(flush).await;
        self.disconnect();
    }

    fn significant(&mut self) -> bool {
        let snap = self.snapshots.borrow_and_update();
        match (&*snap, &self.last) {
            (Some(new), Some(old)) => self.config.significant.between(old, new),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Numbers the latest snapshot and queues it (sending it when connected).
    fn produce(&mut self) {
        let Some(mut r) = self.snapshots.borrow_and_update().clone() else {
            return;
        };
        self.seq += 1;
        r.seq = self.seq;
        r.timestamp_unix_ms = unix_ms();
        r.agent_start_unix_ms = self.agent_start_unix_ms;
        self.stats.produced.store(self.seq, Ordering::Relaxed);
        metrics::counter!(METRIC_PRODUCED).increment(1);
        if self.buffer.len() >= self.config.buffer {
            self.buffer.pop_front();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(METRIC_DROPPED).increment(1);
        }
        self.last = Some(r.clone());
        self.last_at = Some(Instant::now());
        if let Some(conn) = &self.conn {
            // The stream's queue is as long as the buffer (plus room for reports made while it
            // opens): full means the transport stalled, so start over on a fresh connection.
            if conn.tx.try_send(r.clone()).is_err() {
                tracing::info!("report stream stalled; reconnecting");
                self.disconnect();
            }
        }
        self.buffer.push_back(r);
    }

    fn acknowledge(&mut self, seq: u64) {
        while self.buffer.front().is_some_and(|r| r.seq <= seq) {
            self.buffer.pop_front();
        }
        self.stats.acked.fetch_max(seq, Ordering::Relaxed);
    }

    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take()
            && matches!(c.state, ConnState::Open(_))
        {
            self.stats.connected.store(false, Ordering::Relaxed);
            metrics::gauge!(METRIC_CONNECTED).set(0.0);
        }
    }

    /// Starts connecting in the background, with everything unacknowledged queued first, so it
    /// goes out first and in order; reports produced meanwhile queue behind it.
    fn connect(&mut self) {
        let (tx, rx) = mpsc::channel(self.config.buffer + 16);
        for r in &self.buffer {
            // The queue is longer than the buffer: this cannot fail.
            let _ = tx.try_send(r.clone());
        }
        if self.config.tls.is_some() {
            // Rotated certificates take effect here; unreadable ones leave the last good ones.
            match endpoint(&self.config) {
                Ok(e) => self.endpoint = e,
                Err(e) => tracing::warn!("{e}; connecting with the TLS files read before"),
            }
        }
        let endpoint = self.endpoint.clone();
        let limit = self.config.connect_timeout;
        let opening: Opening = Box::pin(async move {
            let open = async {
                let channel: Channel = endpoint.connect().await.map_err(|e| e.to_string())?;
                NodeReportsClient::new(channel)
                    .stream_reports(ReceiverStream::new(rx))
                    .await
                    .map(|r| Box::new(r.into_inner()))
                    .map_err(|s| s.to_string())
            };
            match tokio::time::timeout(limit, open).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {limit:?}")),
            }
        });
        self.conn = Some(Conn {
            tx,
            state: ConnState::Opening(opening),
        });
    }

    fn opened(&mut self) {
        tracing::info!(
            endpoint = %self.config.endpoint,
            resent = self.buffer.len(),
            "report stream to colo-scheduler open"
        );
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.stats.connected.store(true, Ordering::Relaxed);
        metrics::counter!(METRIC_CONNECTS).increment(1);
        metrics::gauge!(METRIC_CONNECTED).set(1.0);
        // Nothing was waiting to be resent, so everything went to the scheduler on the last
        // connection, which may have been a colo-scheduler that has since restarted and lost
        // it. Send the node's current state now rather than at the next tick: the scheduler on
        // this connection then knows the node from the moment it is connected.
        if self.buffer.is_empty() {
            self.produce();
        }
    }

    /// Waits up to `limit` for the buffer to drain (connecting once more if needed).
    async fn flush(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut retried = false;
        while !self.buffer.is_empty() {
            if self.conn.is_none() {
                if retried {
                    return;
                }
                retried = true;
                self.connect();
            }
            match tokio::time::timeout_at(deadline, next_event(self.conn.as_mut())).await {
                Ok(ConnEvent::Opened(acks)) => {
                    if let Some(c) = &mut self.conn {
                        c.state = ConnState::Open(acks);
                    }
                    self.opened();
                }
                Ok(ConnEvent::Ack(seq)) => self.acknowledge(seq),
                Ok(ConnEvent::Broken(_)) => self.disconnect(),
                Err(_) => return,
            }
        }
    }
}

/// The next thing to happen on the connection; never, when there is none.
async fn next_event(conn: Option<&mut Conn>) -> ConnEvent {
    let Some(conn) = conn else {
        return std::future::pending().await;
    };
    match &mut conn.state {
        ConnState::Opening(f) => match f.await {
            Ok(acks) => ConnEvent::Opened(acks),
            Err(e) => ConnEvent::Broken(format!("cannot open: {e}")),
        },
        ConnState::Open(acks) => match acks.message().await {
            Ok(Some(a)) => ConnEvent::Ack(a.seq),
            Ok(None) => ConnEvent::Broken("closed by colo-scheduler".into()),
            Err(e) => ConnEvent::Broken(e.to_string()),
        },
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Raw measurements of a node, from which [`node_report`] builds the snapshot to publish.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInputs {
    /// The node's name as the cluster scheduler knows it (Kubernetes node name, YARN host).
    pub node_name: String,
    /// CPU and memory of the node.
    pub capacity: Resources,
    /// What online services use now.
    pub online_usage: Resources,
    /// What offline (batch) jobs use now.
    pub offline_usage: Resources,
    /// Interference signals of the online services.
    pub signals: InterferenceSignals,
    /// Offline jobs by state name (`running`, `paused`, ...).
    pub jobs_by_state: HashMap<String, u32>,
}

/// Builds the snapshot to publish from raw measurements with colo-policy's scoring: batch budget
/// (capacity − online usage − headroom), interference score and components, and the batch
/// verdict with hysteresis (`previous` is the verdict of the last snapshot; a fresh agent starts
/// from `Admission::Accepting`). Returns the snapshot and the new verdict to keep.
#[must_use]
pub fn node_report(
    inputs: &NodeInputs,
    params: &ScoringParams,
    previous: Admission,
) -> (NodeReport, Admission) {
    let budget = reclaimable(
        inputs.capacity,
        inputs.online_usage,
        headroom(inputs.capacity, &params.headroom),
    );
    let score = interference_score(&inputs.signals, &params.interference);
    let admission = batch_admission(score.score, previous, &params.admission);
    let res = |r: Resources| report::Resources {
        cpu_millicores: r.cpu_millicores,
        memory_bytes: r.memory_bytes,
    };
    let report = NodeReport {
        node_name: inputs.node_name.clone(),
        seq: 0,
        timestamp_unix_ms: unix_ms(),
        agent_version: crate::AGENT_VERSION.to_owned(),
        capacity: Some(res(inputs.capacity)),
        online_usage: Some(res(inputs.online_usage)),
        offline_usage: Some(res(inputs.offline_usage)),
        reclaimable: Some(res(budget)),
        interference: Some(report::Interference {
            score: score.score,
            run_delay: score.run_delay,
            psi: score.psi,
            sli: score.sli,
        }),
        jobs_by_state: inputs.jobs_by_state.clone(),
        agent_start_unix_ms: 0,
        refuses_batch: admission == Admission::Refusing,
    };
    (report, admission)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn inputs(score_psi: f64) -> NodeInputs {
        NodeInputs {
            node_name: "n1".into(),
            capacity: Resources::new(16_000, 64 * GIB),
            online_usage: Resources::new(6_000, 20 * GIB),
            offline_usage: Resources::new(2_000, 8 * GIB),
            signals: InterferenceSignals {
                psi_ms_per_s: score_psi,
                ..InterferenceSignals::default()
            },
            jobs_by_state: HashMap::from([("running".to_owned(), 2)]),
        }
    }

    #[test]
    fn report_carries_the_shared_scoring() {
        let p = ScoringParams::default();
        let (r, a) = node_report(&inputs(0.0), &p, Admission::Accepting);
        assert_eq!(a, Admission::Accepting);
        assert!(!r.refuses_batch);
        let budget = r.reclaimable.unwrap();
        assert_eq!(budget.cpu_millicores, 16_000 - 6_000 - 1_600);
        assert_eq!(r.interference.unwrap().score, 0.0);
        assert_eq!(r.jobs_by_state["running"], 2);
        assert_eq!(r.agent_version, crate::AGENT_VERSION);

        // Score = 0.4 × (0.3 × c / 0.7) + 0.6 × c ≈ 0.771 × c for a PSI component c.
        // PSI 400 ms/s saturates it: score ≈ 77 > 70 → refuse.
        let (hot, a) = node_report(&inputs(400.0), &p, Admission::Accepting);
        assert_eq!(a, Admission::Refusing);
        assert!(hot.refuses_batch);
        // PSI 100 ms/s: c ≈ 47, score ≈ 37 < 50: a refusing node accepts again.
        let (_, a) = node_report(&inputs(100.0), &p, Admission::Refusing);
        assert_eq!(a, Admission::Accepting);
        // PSI 150 ms/s: score ≈ 57, inside the band: stays as it was.
        let (_, a) = node_report(&inputs(150.0), &p, Admission::Refusing);
        assert_eq!(a, Admission::Refusing);
        let (_, a) = node_report(&inputs(150.0), &p, Admission::Accepting);
        assert_eq!(a, Admission::Accepting);
    }

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
