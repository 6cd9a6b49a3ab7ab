//! An open-loop HTTP/1.1 load generator without coordinated omission.
//!
//! Request `i` is due at `start + i / rate`, whatever happened to earlier ones; its latency is
//! measured from that due time to the end of its response, so a stall of the server (or of the
//! generator) shows up in the latency of every request that was due during it. One thread, one
//! `epoll` set, a `timerfd` armed for the next due time (ns resolution), and a pool of keep-alive
//! connections; a request due while every connection is busy waits in a backlog (its wait
//! counts). Latencies go into an HdrHistogram.
//!
//! The rate may step once (`step_at`, `step_rate`) for the reaction benchmark.

mod conn;

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use conn::{Conn, Epoll, check, drop_conn, parse_response, reconnect, sys};

/// Errors of the load generator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A setting is out of range.
    #[error("{0}")]
    Setting(String),
    /// The target cannot be reached at all.
    #[error("cannot connect to {addr}: {source}; is the server running?")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// The call.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Requests per second.
    pub rate: f64,
    /// How long requests are sent (warm-up included).
    pub duration: Duration,
    /// Requests due in this first part are sent but not recorded.
    pub warmup: Duration,
    /// Keep-alive connections opened up front.
    pub connections: usize,
    /// Switch to `step_rate` this long after the start.
    pub step_at: Option<Duration>,
    /// The rate after the step.
    pub step_rate: f64,
    /// Record completions per bucket of this width (a time series), if set.
    pub timeline_bucket: Option<Duration>,
}

/// What a run measured (latencies in µs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// Target rate (before any step), requests/s.
    pub target_rate: f64,
    /// Recorded interval (duration − warm-up), s.
    pub measured_s: f64,
    /// Requests due in the recorded interval.
    pub due: u64,
    /// Of those, answered with a 2xx.
    pub ok: u64,
    /// Of those, failed (non-2xx, broken connection) or unanswered at the end: the sum of
    /// `error_statuses`, `broken` and `unanswered`.
    pub errors: u64,
    /// Non-2xx answers by HTTP status (what the server said when it refused).
    #[serde(default)]
    pub error_statuses: BTreeMap<u16, u64>,
    /// Requests lost to a connection that broke or to a response that could not be parsed.
    #[serde(default)]
    pub broken: u64,
    /// Requests still unanswered 2 s after the end.
    #[serde(default)]
    pub unanswered: u64,
    /// Answered requests per second in the recorded interval.
    pub achieved_rate: f64,
    /// Latency percentiles, µs.
    pub p50_us: f64,
    /// p90.
    pub p90_us: f64,
    /// p99.
    pub p99_us: f64,
    /// p99.9.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Most requests waiting for a free connection at once.
    pub max_backlog: usize,
    /// Reconnections made.
    pub reconnects: u64,
    /// CLOCK_MONOTONIC ns of the start (due time of request 0).
    pub start_mono_ns: u64,
    /// CLOCK_MONOTONIC ns of the rate step, if any.
    pub step_mono_ns: Option<u64>,
    /// Completions per timeline bucket (whole run), if asked.
    pub timeline: Vec<u32>,
}

/// CLOCK_MONOTONIC in ns.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

const TIMER: u64 = u64::MAX;

/// Runs the load and returns what it measured.
pub fn run(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    if !(spec.rate > 0.0 && spec.rate.is_finite())
        || spec.connections == 0
        || spec.duration <= spec.warmup
    {
        return Err(LoadError::Setting(format!(
            "need rate > 0, connections > 0 and duration > warm-up (rate {}, connections {}, duration {:?}, warm-up {:?})",
            spec.rate, spec.connections, spec.duration, spec.warmup
        )));
    }
    if spec.step_at.is_some() && !(spec.step_rate > 0.0 && spec.step_rate.is_finite()) {
        return Err(LoadError::Setting("the step rate must be > 0".into()));
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: colo-loadgen\r\n\r\n",
        spec.path, spec.addr
    )
    .into_bytes();
    let ep = Epoll::new()?;
    // SAFETY: timerfd_create returns a new descriptor or -1.
    let rc = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    };
    let tfd = check(rc, "timerfd_create")?;
    // SAFETY: a fresh descriptor we own from here on.
    let tfd = unsafe { OwnedFd::from_raw_fd(tfd) };
    ep.ctl(libc::EPOLL_CTL_ADD, tfd.as_raw_fd(), TIMER)?;

    let connect = |addr: SocketAddr| -> Result<TcpStream, LoadError> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|source| LoadError::Connect { addr, source })?;
        s.set_nodelay(true).map_err(sys("TCP_NODELAY"))?;
        s.set_nonblocking(true).map_err(sys("O_NONBLOCK"))?;
        Ok(s)
    };
    let mut conns: Vec<Conn> = Vec::with_capacity(spec.connections);
    for i in 0..spec.connections {
        let s = connect(spec.addr)?;
        ep.ctl(libc::EPOLL_CTL_ADD, s.as_raw_fd(), i as u64)?;
        conns.push(Conn {
            stream: Some(s),
            busy: None,
            buf: Vec::with_capacity(4096),
        });
    }
    let mut idle: Vec<usize> = (0..spec.connections).rev().collect();
    let mut backlog: VecDeque<u64> = VecDeque::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
        .map_err(|e| LoadError::Setting(e.to_string()))?;

    let start = mono_ns() + 20_000_000;
    let dur_ns = u64::try_from(spec.duration.as_nanos()).unwrap_or(u64::MAX);
    let end = start + dur_ns;
    let record_from = start + u64::try_from(spec.warmup.as_nanos()).unwrap_or(0);
    let step_ns = spec
        .step_at
        .map(|s| start + u64::try_from(s.as_nanos()).unwrap_or(0));
    let period = |rate: f64| (1e9 / rate).max(1.0);
    let mut next_due = start as f64;
    let bucket_ns = spec
        .timeline_bucket
        .map(|b| u64::try_from(b.as_nanos()).unwrap_or(1).max(1));
    let mut timeline =
        vec![0u32; bucket_ns.map_or(0, |b| usize::try_from(dur_ns / b + 1).unwrap_or(0))];

    let (mut due_rec, mut ok_rec, mut reconnects, mut max_backlog) = (0u64, 0u64, 0u64, 0usize);
    let (mut broken_rec, mut unanswered_rec) = (0u64, 0u64);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut scratch = [0u8; 16 * 1024];

    // Sends the request due at `due` on connection `i`.
    let send = |c: &mut Conn, due: u64| -> bool {
        let Some(s) = c.stream.as_mut() else {
            return false;
        };
        c.busy = Some(due);
        c.buf.clear();
        // A few hundred bytes always fit an empty socket buffer: a short write is a broken link.
        matches!(s.write(&request), Ok(n) if n == request.len())
    };

    loop {
        let now = mono_ns();
        // Issue every request now due.
        while (next_due as u64) <= now && (next_due as u64) < end {
            let due = next_due as u64;
            if due >= record_from {
                due_rec += 1;
            }
            backlog.push_back(due);
            let rate = match step_ns {
                Some(st) if due >= st => spec.step_rate,
                _ => spec.rate,
            };
            next_due += period(rate);
        }
        while let Some(&due) = backlog.front() {
            let Some(i) = idle.pop() else { break };
            backlog.pop_front();
            if !send(&mut conns[i], due) {
                if due >= record_from {
                    broken_rec += 1;
                }
                conns[i].busy = None;
                reconnect(&ep, &mut conns[i], i, spec.addr, &connect, &mut reconnects)?;
                idle.push(i);
            }
        }
        max_backlog = max_backlog.max(backlog.len());
        let in_flight = conns.iter().any(|c| c.busy.is_some());
        if (next_due as u64) >= end && backlog.is_empty() && !in_flight {
            break;
        }
        if now > end + 2_000_000_000 {
            // Give up on requests unanswered 2 s after the end: each is an error.
            for c in &conns {
                if let Some(due) = c.busy
                    && due >= record_from
                {
                    unanswered_rec += 1;
                }
            }
            unanswered_rec += backlog.iter().filter(|d| **d >= record_from).count() as u64;
            break;
        }
        // Sleep until the next due time (or 10 ms past the end while draining).
        let wake = if (next_due as u64) < end {
            next_due as u64
        } else {
            now + 10_000_000
        };
        let its = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: i64::try_from(wake / 1_000_000_000).unwrap_or(0),
                tv_nsec: i64::try_from(wake % 1_000_000_000).unwrap_or(0).max(1),
            },
        };
        // SAFETY: valid itimerspec; absolute time on CLOCK_MONOTONIC.
        let rc = unsafe {
            libc::timerfd_settime(
                tfd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &its,
                std::ptr::null_mut(),
            )
        };
        check(rc, "timerfd_settime")?;
        // SAFETY: events has room for its length; the kernel writes at most that many.
        let n = unsafe {
            libc::epoll_wait(
                ep.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(LoadError::Sys {
                what: "epoll_wait",
                source: e,
            });
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == TIMER {
                let mut b = [0u8; 8];
                // SAFETY: reads at most 8 bytes into b; EAGAIN is fine.
                unsafe { libc::read(tfd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
                continue;
            }
            let i = usize::try_from(token).unwrap_or(usize::MAX);
            let Some(c) = conns.get_mut(i) else { continue };
            let mut broken = false;
            while let Some(s) = c.stream.as_mut() {
                match s.read(&mut scratch) {
                    Ok(0) => {
                        broken = true;
                        break;
                    }
                    Ok(k) => c.buf.extend_from_slice(&scratch[..k]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            let done = mono_ns();
            let mut close = broken;
            if let Some(due) = c.busy {
                match parse_response(&c.buf) {
                    Some(Ok((used, status, cl))) => {
                        c.buf.drain(..used);
                        c.busy = None;
                        close |= cl;
                        if let Some(b) = bucket_ns
                            && done >= start
                            && let Some(slot) = timeline
                                .get_mut(usize::try_from((done - start) / b).unwrap_or(usize::MAX))
                        {
                            *slot += 1;
                        }
                        if due >= record_from && due < end {
                            if (200..300).contains(&status) {
                                ok_rec += 1;
                                let _ = hist.record((done.saturating_sub(due) / 1000).max(1));
                            } else {
                                *statuses.entry(status).or_default() += 1;
                            }
                        }
                        if !close {
                            idle.push(i);
                        }
                    }
                    Some(Err(())) => {
                        if due >= record_from {
                            broken_rec += 1;
                        }
                        c.busy = None;
                        close = true;
                    }
                    None if broken => {
                        if due >= record_from {
                            broken_rec += 1;
                        }
                        c.busy = None;
                    }
                    None => {}
                }
            }
            if close {
                let was_idle = idle.iter().position(|&x| x == i);
                if let Some(p) = was_idle {
                    idle.swap_remove(p);
                }
                if now < end {
                    reconnect(&ep, c, i, spec.addr, &connect, &mut reconnects)?;
                    idle.push(i);
                } else {
                    drop_conn(&ep, c);
                }
            }
        }
    }
    let measured = (end - record_from) as f64 / 1e9;
    let q = |p: f64| {
        if hist.is_empty() {
            0.0
        } else {
            hist.value_at_quantile(p) as f64
        }
    };
    Ok(LoadReport {
        target_rate: spec.rate,
        measured_s: measured,
        due: due_rec,
        ok: ok_rec,
        errors: statuses.values().sum::<u64>() + broken_rec + unanswered_rec,
        error_statuses: statuses,
        broken: broken_rec,
        unanswered: unanswered_rec,
        achieved_rate: ok_rec as f64 / measured,
        p50_us: q(0.50),
        p90_us: q(0.90),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: hist.max() as f64,
        mean_us: hist.mean(),
        max_backlog,
        reconnects,
        start_mono_ns: start,
        step_mono_ns: step_ns,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A tiny keep-alive server that answers each request after `delay`.
    fn server(delay: Duration) -> SocketAddr {
        server_with(delay, "200 OK")
    }

    /// [`server`] answering with `status` (e.g. `404 Not Found`).
    fn server_with(delay: Duration, status: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut have = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        have.extend_from_slice(&buf[..n]);
                        while let Some(p) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..p + 4);
                            std::thread::sleep(delay);
                            let answer =
                                format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok");
                            if s.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn the_rate_is_kept_and_latency_is_measured_from_the_due_time() {
        let addr = server(Duration::from_millis(2));
        let spec = LoadSpec {
            addr,
            path: "/".into(),
            rate: 500.0,
            duration: Duration::from_millis(1500),
            warmup: Duration::from_millis(500),
            connections: 4,
            step_at: None,
            step_rate: 0.0,
            timeline_bucket: Some(Duration::from_millis(100)),
        };
        let r = run(&spec).unwrap();
        assert_eq!(r.errors, 0, "{r:?}");
        assert!((r.due as f64 - 500.0).abs() <= 2.0, "{r:?}");
        assert!((r.achieved_rate - 500.0).abs() < 25.0, "{r:?}");
        assert!(r.p50_us >= 2000.0, "{r:?}");
        // Open loop: a server slower than the offered rate builds a backlog that counts.
        let slow = server(Duration::from_millis(20));
        let r = run(&LoadSpec {
            addr: slow,
            connections: 2,
            ..spec.clone()
        })
        .unwrap();
        assert!(r.max_backlog > 10, "{r:?}");
        assert!(r.p99_us > 100_000.0, "waiting requests count: {r:?}");
    }

    #[test]
    fn refusals_are_counted_by_status() {
        let addr = server_with(Duration::ZERO, "404 Not Found");
        let r = run(&LoadSpec {
            addr,
            path: "/".into(),
            rate: 200.0,
            duration: Duration::from_millis(700),
            warmup: Duration::from_millis(200),
            connections: 2,
            step_at: None,
            step_rate: 0.0,
            timeline_bucket: None,
        })
        .unwrap();
        assert_eq!(r.ok, 0, "{r:?}");
        assert_eq!(r.errors, r.due, "{r:?}");
        assert_eq!(r.error_statuses.get(&404), Some(&r.due), "{r:?}");
        assert_eq!((r.broken, r.unanswered), (0, 0), "{r:?}");
        // The breakdown survives the JSON the bench reads back.
        let back: LoadReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.error_statuses, r.error_statuses);
    }

    #[test]
    fn the_rate_steps() {
        let addr = server(Duration::ZERO);
        let spec = LoadSpec {
            addr,
            path: "/".into(),
            rate: 200.0,
            duration: Duration::from_millis(2000),
            warmup: Duration::from_millis(1),
            connections: 4,
            step_at: Some(Duration::from_millis(1000)),
            step_rate: 600.0,
            timeline_bucket: Some(Duration::from_millis(250)),
        };
        let r = run(&spec).unwrap();
        assert!((r.due as f64 - 800.0).abs() <= 3.0, "{r:?}");
        let before: u32 = r.timeline[1..4].iter().sum();
        let after: u32 = r.timeline[5..8].iter().sum();
        assert!(after > 2 * before, "{:?}", r.timeline);
        assert!(r.step_mono_ns.unwrap() > r.start_mono_ns);
    }
}
