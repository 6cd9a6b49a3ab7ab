//! The online load: pgbench at a fixed rate per phase (open loop), peak and trough phases in
//! turn. pgbench has no rate schedule, so each phase is one pgbench with its own `-R` and
//! `-T`, and `-l` writes every transaction's latency to a log of its own.
//!
//! Latency is the log's `time` field: under `-R` pgbench measures it from the transaction's
//! scheduled start, so it includes the schedule lag (the wait behind a slow server that an open
//! loop must count); the separate lag field is not added again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use serde::Serialize;

use crate::host::{BenchCgroup, HostError, spawn_in};
use crate::services::{Postgres, which};

/// Peak or trough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// The full rate.
    Peak,
    /// A fraction of it.
    Trough,
}

impl PhaseKind {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Peak => "peak",
            Self::Trough => "trough",
        }
    }
}

/// One phase of the load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Phase {
    /// Peak or trough.
    pub kind: PhaseKind,
    /// Transactions per second (`-R`).
    pub rate: f64,
    /// Seconds (`-T`).
    pub secs: u64,
}

/// The phases of one run: `cycles` × (peak at `peak_rate`, trough at `trough_rate`), each
/// `secs` long. Empty when any figure is zero.
pub fn schedule(peak_rate: f64, trough_rate: f64, secs: u64, cycles: usize) -> Vec<Phase> {
    if secs == 0 || !(peak_rate > 0.0 && trough_rate > 0.0) {
        return Vec::new();
    }
    (0..cycles)
        .flat_map(|_| {
            [
                Phase {
                    kind: PhaseKind::Peak,
                    rate: peak_rate,
                    secs,
                },
                Phase {
                    kind: PhaseKind::Trough,
                    rate: trough_rate,
                    secs,
                },
            ]
        })
        .collect()
}

/// One transaction of a pgbench log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txn {
    /// Latency from the scheduled start, µs.
    pub latency_us: u64,
    /// Completion time, µs since the epoch.
    pub end_us: u64,
}

/// What a line of a pgbench per-transaction log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLine {
    /// A completed transaction.
    Done(Txn),
    /// Skipped (`--latency-limit`) or failed: counted, no latency.
    NotDone,
}

/// Parses `client_id transaction_no time script_no time_epoch time_us [schedule_lag ...]`;
/// `None` for a line that is not of that shape (a torn last line while pgbench still writes).
pub fn parse_log_line(line: &str) -> Option<LogLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        return None;
    }
    f[0].parse::<u64>().ok()?;
    f[1].parse::<u64>().ok()?;
    let epoch: u64 = f[4].parse().ok()?;
    let frac: u64 = f[5].parse().ok()?;
    match f[2] {
        "skipped" | "failed" => Some(LogLine::NotDone),
        t => Some(LogLine::Done(Txn {
            latency_us: t.parse().ok()?,
            end_us: epoch * 1_000_000 + frac,
        })),
    }
}

/// The transactions of a log text: completed ones and the count of skipped or failed ones.
pub fn parse_log(text: &str) -> (Vec<Txn>, u64) {
    let mut done = Vec::new();
    let mut not_done = 0;
    for l in text.lines() {
        match parse_log_line(l) {
            Some(LogLine::Done(t)) => done.push(t),
            Some(LogLine::NotDone) => not_done += 1,
            None => {}
        }
    }
    (done, not_done)
}

/// The `q` quantile (0–1) of sorted latencies, µs (nearest rank); NaN when empty.
pub fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// A phase as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRun {
    /// The phase asked for.
    pub phase: Phase,
    /// Wall-clock start and end, µs since the epoch.
    pub start_us: u64,
    /// End.
    pub end_us: u64,
    /// Completed transactions.
    pub done: u64,
    /// Skipped or failed transactions.
    pub not_done: u64,
    /// pgbench's exit status was success.
    pub ok: bool,
}

/// µs since the epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Starts one phase's pgbench in `cg`: `clients` connections, one thread, TPC-B-like, per
/// transaction log under `prefix` (pgbench appends `.<pid>`).
pub fn start_phase(
    pg: &Postgres,
    cg: &BenchCgroup,
    phase: Phase,
    clients: u32,
    prefix: &Path,
) -> Result<Child, HostError> {
    let pgbench = which("pgbench").ok_or_else(|| HostError::Missing("pgbench".into()))?;
    let mut cmd = Command::new(pgbench);
    cmd.args(pg.conn_args())
        .args(["-n", "-c", &clients.to_string(), "-j", "1"])
        .args(["-R", &format!("{}", phase.rate)])
        .args(["-T", &phase.secs.to_string()])
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg("postgres")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_in(&mut cmd, &cg.procs_files())
}

/// The log files pgbench wrote under `prefix` (`<prefix>.<pid>[.<thread>]`).
pub fn log_files(prefix: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(stem)) = (prefix.parent(), prefix.file_name()) else {
        return Vec::new();
    };
    let stem = format!("{}.", stem.to_string_lossy());
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_alternates_peak_and_trough() {
        let s = schedule(300.0, 30.0, 20, 2);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s.iter().map(|p| p.kind).collect::<Vec<_>>(),
            [
                PhaseKind::Peak,
                PhaseKind::Trough,
                PhaseKind::Peak,
                PhaseKind::Trough
            ]
        );
        assert_eq!(s[0].rate, 300.0);
        assert_eq!(s[1].rate, 30.0);
        assert!(s.iter().all(|p| p.secs == 20));
        assert!(schedule(300.0, 30.0, 0, 2).is_empty());
        assert!(schedule(0.0, 30.0, 20, 2).is_empty());
        assert!(schedule(300.0, 30.0, 20, 0).is_empty());
    }

    #[test]
    fn log_lines_parse_with_and_without_lag() {
        assert_eq!(
            parse_log_line("0 199 2241 0 1175850569 339241 2000"),
            Some(LogLine::Done(Txn {
                latency_us: 2241,
                end_us: 1_175_850_569_339_241
            }))
        );
        assert_eq!(
            parse_log_line("3 7 1043 0 1175850569 1"),
            Some(LogLine::Done(Txn {
                latency_us: 1043,
                end_us: 1_175_850_569_000_001
            }))
        );
        assert_eq!(
            parse_log_line("0 200 skipped 0 1175850569 339241 70000"),
            Some(LogLine::NotDone)
        );
        assert_eq!(
            parse_log_line("0 201 failed 0 1175850569 339241 3 1"),
            Some(LogLine::NotDone)
        );
        // A torn line (pgbench still writing), text, or negative numbers: not a transaction.
        assert_eq!(parse_log_line("0 199 22"), None);
        assert_eq!(parse_log_line("pgbench: error"), None);
        assert_eq!(parse_log_line("0 199 -5 0 1175850569 339241"), None);
    }

    #[test]
    fn a_log_text_counts_done_and_not_done() {
        let (done, not) =
            parse_log("0 1 900 0 100 5\n1 1 1100 0 100 6\n0 2 skipped 0 100 7 10\n0 3 12");
        assert_eq!(done.len(), 2);
        assert_eq!(not, 1);
        assert_eq!(done[1].latency_us, 1100);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&[7], 0.999), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
