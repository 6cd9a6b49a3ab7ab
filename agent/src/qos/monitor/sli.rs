//! Service-level indicators: latency samples over a sliding window, from the agent's own HTTP
//! probe or pushed by the service (`ReportSli`), turned into a p99 ÷ target ratio for the loop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most samples a window keeps (a bound on memory and on the p99's cost).
pub const MAX_SAMPLES: usize = 16_384;

/// Latencies (µs) seen within the last `window`, and their p99.
#[derive(Debug)]
pub struct SliWindow {
    window: Duration,
    samples: VecDeque<(Instant, u32)>,
    scratch: Vec<u32>,
}

impl SliWindow {
    /// An empty window of `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::with_capacity(64),
            scratch: Vec::new(),
        }
    }

    /// Adds one latency observed at `at`.
    pub fn push(&mut self, at: Instant, latency: Duration) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.samples.push_back((at, us));
    }

    /// The p99 of the samples not older than the window at `now`; `None` with fewer than
    /// `min_samples`.
    pub fn p99(&mut self, now: Instant, min_samples: usize) -> Option<Duration> {
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.window)
        {
            self.samples.pop_front();
        }
        if self.samples.len() < min_samples.max(1) {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(self.samples.iter().map(|(_, us)| *us));
        // Nearest rank: the smallest value with at least 99 % of the samples at or below it.
        let n = self.scratch.len();
        let rank = (n * 99).div_ceil(100).clamp(1, n) - 1;
        let (_, v, _) = self.scratch.select_nth_unstable(rank);
        Some(Duration::from_micros(u64::from(*v)))
    }

    /// Samples currently held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A window shared between a producer (probe task, API) and the loop.
pub type SharedWindow = Arc<Mutex<SliWindow>>;

/// A parsed `http://host:port/path` probe target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// `host:port` to connect to.
    pub addr: String,
    /// `Host` header.
    pub host: String,
    /// Request path.
    pub path: String,
}

/// Errors of the SLI probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not a plain `http://` URL.
    #[error(
        "SLI probe url {0:?} is not supported: write http://host[:port]/path (https is not probed)"
    )]
    Url(String),
}

impl ProbeTarget {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, ProbeError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ProbeError::Url(url.into()))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if hostport.is_empty() || hostport.contains(['@', ' ']) || path.contains([' ', '\r', '\n'])
        {
            return Err(ProbeError::Url(url.into()));
        }
        let has_port = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok())
            && !hostport.ends_with(']');
        let addr = if has_port {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        Ok(Self {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
        })
    }
}

/// One HTTP/1.1 keep-alive connection used for probing.
struct ProbeConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeOutcome {
    /// 2xx or 3xx; the connection may be reused.
    Ok { reusable: bool },
    /// Another status or a broken response.
    Failed,
}

async fn one_probe(
    conn: &mut ProbeConn,
    target: &ProbeTarget,
    request: &[u8],
) -> std::io::Result<ProbeOutcome> {
    conn.stream.write_all(request).await?;
    conn.buf.clear();
    let header_end = loop {
        if let Some(i) = find(&conn.buf, b"\r\n\r\n") {
            break i + 4;
        }
        if conn.buf.len() > 64 * 1024 {
            return Ok(ProbeOutcome::Failed);
        }
        let mut chunk = [0u8; 4096];
        let n = conn.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        conn.buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&conn.buf[..header_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let close = head
        .lines()
        .any(|l| l.starts_with("connection:") && l.contains("close"));
    let _ = target;
    match length {
        Some(len) => {
            let mut have = conn.buf.len() - header_end;
            let mut chunk = [0u8; 4096];
            while have < len {
                let n = conn.stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                have += n;
            }
        }
        None => {
            // No length (chunked or close-delimited): read to the end, then reconnect.
            let mut chunk = [0u8; 4096];
            while conn.stream.read(&mut chunk).await? > 0 {}
        }
    }
    if (200..400).contains(&status) {
        Ok(ProbeOutcome::Ok {
            reusable: length.is_some() && !close,
        })
    } else {
        Ok(ProbeOutcome::Failed)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Probes `target` every `interval` until `stop` fires, pushing each latency into `window`; a
/// failed or timed-out probe counts as `timeout` (the SLO sees it as slow).
pub async fn run_probe(
    target: ProbeTarget,
    interval: Duration,
    timeout: Duration,
    window: SharedWindow,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: colo-agent-sli-probe\r\nAccept: */*\r\n\r\n",
        target.path, target.host
    )
    .into_bytes();
    let mut conn: Option<ProbeConn> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let start = Instant::now();
        let attempt = tokio::time::timeout(timeout, async {
            if conn.is_none() {
                let stream = TcpStream::connect(&target.addr).await?;
                stream.set_nodelay(true)?;
                conn = Some(ProbeConn {
                    stream,
                    buf: Vec::with_capacity(1024),
                });
            }
            let c = conn.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
            one_probe(c, &target, &request).await
        })
        .await;
        let latency = start.elapsed();
        let (sample, keep) = match attempt {
            Ok(Ok(ProbeOutcome::Ok { reusable })) => (latency, reusable),
            Ok(Ok(ProbeOutcome::Failed)) | Ok(Err(_)) | Err(_) => {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(addr = %target.addr, path = %target.path, failures, "SLI probe failed; counted as the timeout");
                }
                (timeout, false)
            }
        };
        if !keep {
            conn = None;
        }
        window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now(), sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_over_the_window() {
        let mut w = SliWindow::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 1..=100u64 {
            w.push(t0, Duration::from_micros(i * 10));
        }
        assert_eq!(w.p99(t0, 1), Some(Duration::from_micros(990)));
        assert_eq!(w.p99(t0, 101), None);
        // Everything ages out after the window.
        assert_eq!(w.p99(t0 + Duration::from_millis(1500), 1), None);
        assert!(w.is_empty());
        w.push(t0, Duration::from_millis(7));
        assert_eq!(w.p99(t0, 1), Some(Duration::from_millis(7)));
    }

    #[test]
    fn urls() {
        let t = ProbeTarget::parse("http://127.0.0.1:8080/health").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/health")
        );
        let t = ProbeTarget::parse("http://localhost").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.host.as_str(), t.path.as_str()),
            ("localhost:80", "localhost", "/")
        );
        assert!(ProbeTarget::parse("https://x/").is_err());
        assert!(ProbeTarget::parse("http:///x").is_err());
    }

    #[tokio::test]
    async fn the_probe_measures_a_real_server_and_counts_failures_as_timeouts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0u32;
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                n += 1;
                let fail = n > 1;
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        let Ok(k) = s.read(&mut buf).await else {
                            return;
                        };
                        if k == 0 {
                            return;
                        }
                        let reply: &[u8] = if fail {
                            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                        };
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                        // The first connection serves three requests, then closes.
                        if !fail && n == 1 {
                            static SERVED: std::sync::atomic::AtomicU32 =
                                std::sync::atomic::AtomicU32::new(0);
                            if SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 2 {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let target = ProbeTarget::parse(&format!("http://{addr}/")).unwrap();
        let window = Arc::new(Mutex::new(SliWindow::new(Duration::from_secs(10))));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let timeout = Duration::from_millis(500);
        let task = tokio::spawn(run_probe(
            target,
            Duration::from_millis(10),
            timeout,
            window.clone(),
            rx,
        ));
        // Until the three answers and a few failures are in (bounded for a slow host).
        let t0 = Instant::now();
        while window.lock().unwrap().len() < 5 && t0.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.send(true).unwrap();
        task.await.unwrap();
        let mut w = window.lock().unwrap();
        let n = w.len();
        assert!(n >= 5, "{n} probes");
        // Three fast answers, then 503s counted as the timeout.
        assert_eq!(w.p99(Instant::now(), 1), Some(timeout));
    }
}
