//! The reporter's background task: numbers snapshots into reports, keeps the unacknowledged
//! ones in a bounded buffer, and streams them to colo-scheduler, reconnecting with backoff.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use colo_proto::report::node_reports_client::NodeReportsClient;
use colo_proto::report::{NodeReport, ReportAck};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use super::{
    METRIC_CONNECTED, METRIC_CONNECTS, METRIC_DROPPED, METRIC_PRODUCED, ReporterConfig,
    SharedStats, endpoint, unix_ms,
};

/// Equal jitter for backoff delays (a delay in `[d/2, d]`), from a small xorshift generator:
/// no cryptographic quality needed, only agents that do not reconnect in lockstep.
#[derive(Debug)]
pub(super) struct Jitter(u64);

impl Jitter {
    pub(super) fn seeded(salt: &str) -> Self {
        let mut x = u64::from(std::process::id()) ^ unix_ms().unsigned_abs().rotate_left(17);
        for b in salt.bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self(x | 1)
    }

    pub(super) fn spread(&mut self, d: Duration) -> Duration {
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

pub(super) struct Task {
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
    /// A task reporting `snapshots` to `endpoint` until `stop` says so.
    pub(super) fn new(
        config: ReporterConfig,
        endpoint: Endpoint,
        snapshots: watch::Receiver<Option<NodeReport>>,
        stop: watch::Receiver<Option<Duration>>,
        stats: Arc<SharedStats>,
    ) -> Self {
        Self {
            jitter: Jitter::seeded(&config.endpoint),
            config,
            endpoint,
            snapshots,
            stop,
            stats,
            agent_start_unix_ms: unix_ms(),
            seq: 0,
            last: None,
            last_at: None,
            buffer: VecDeque::new(),
            conn: None,
        }
    }

    pub(super) async fn run(mut self) {
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

    /// Waits up to `limit` for the buffer to drain, reconnecting (with the usual backoff) as
    /// often as the time allows: a scheduler slow to answer while the node shuts down must not
    /// cost the reports it has not acknowledged yet.
    async fn flush(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut backoff = self.config.backoff_initial;
        while !self.buffer.is_empty() {
            if self.conn.is_none() {
                self.connect();
            }
            match tokio::time::timeout_at(deadline, next_event(self.conn.as_mut())).await {
                Ok(ConnEvent::Opened(acks)) => {
                    if let Some(c) = &mut self.conn {
                        c.state = ConnState::Open(acks);
                    }
                    self.opened();
                }
                Ok(ConnEvent::Ack(seq)) => {
                    self.acknowledge(seq);
                    backoff = self.config.backoff_initial;
                }
                Ok(ConnEvent::Broken(e)) => {
                    tracing::info!(endpoint = %self.config.endpoint, "report stream to colo-scheduler while flushing: {e}");
                    self.disconnect();
                    let retry_at = Instant::now() + self.jitter.spread(backoff);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    if retry_at >= deadline {
                        return;
                    }
                    tokio::time::sleep_until(retry_at).await;
                }
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
