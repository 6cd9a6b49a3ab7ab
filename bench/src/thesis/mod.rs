//! The thesis benchmark: what colo's sandbox and loop buy a disk-bound online service.
//! PostgreSQL (its own cluster, fsync on) serves pgbench's TPC-B-like load at a fixed rate in
//! peak and trough phases, beside offline jobs that write to its disk and touch memory:
//!
//! | arm | offline side |
//! |---|---|
//! | alone | nothing |
//! | (1) container | container jobs, best effort: the agent's root at a low CPU weight, a memory limit per job |
//! | (2) container-capped | the same plus a static blkio cap on the agent's root |
//! | (3) static-`B`M-`Q`m | MicroVM jobs with a per-VM IO bucket of B MiB/s and a CPU quota of Q millicores on the agent's root, loop observing (one arm per sweep point) |
//! | unthrottled | MicroVM jobs without bucket or quota, loop observing: the reference of the 25 % goal |
//! | (4) colo | MicroVM jobs, colo's loop enforcing, pgbench's latency pushed through ReportSli |
//!
//! Arms are interleaved per repetition in a rotating order. Here: the settings and the
//! repetition loop; `run.rs` runs one arm once, `pgbench.rs` the load and its logs,
//! `offline.rs` the work unit and the static settings, `actions.rs` the loop's log,
//! `report.rs` the table and the goals.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::host::{BenchCgroup, HostError};
use crate::services::{Bins, Postgres, write_file};

mod actions;
mod offline;
mod pgbench;
mod report;
mod run;

pub use actions::{Direction, LoggedAction, PhaseActions, parse_actions, parse_rfc3339_us};
pub use offline::WorkUnit;
pub use pgbench::{Phase, PhaseKind, log_files, parse_log, parse_log_line, schedule, start_phase};
pub use report::{Summary, best_static, goals, summarize, table};

/// An arm of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "arm", rename_all = "kebab-case")]
pub enum Arm {
    /// PostgreSQL alone.
    Alone,
    /// (1) best-effort container jobs.
    Container,
    /// (2) the same plus a static blkio cap.
    ContainerCapped,
    /// (3) MicroVM jobs with a static per-VM IO bucket and an offline CPU quota.
    Static {
        /// Per-VM bucket, MiB/s.
        bucket_mib: u64,
        /// Offline CPU quota, millicores.
        quota_milli: u32,
    },
    /// MicroVM jobs without limits, loop observing.
    Unthrottled,
    /// (4) MicroVM jobs under colo's loop.
    Colo,
}

impl Arm {
    /// Short name (CSV, logs).
    pub fn key(&self) -> String {
        match self {
            Self::Alone => "alone".into(),
            Self::Container => "container".into(),
            Self::ContainerCapped => "container-capped".into(),
            Self::Static {
                bucket_mib,
                quota_milli,
            } => format!("static-{bucket_mib}M-{quota_milli}m"),
            Self::Unthrottled => "unthrottled".into(),
            Self::Colo => "colo".into(),
        }
    }

    /// Name in tables.
    pub fn name(&self) -> String {
        match self {
            Self::Alone => "alone".into(),
            Self::Container => "(1) containers, best effort".into(),
            Self::ContainerCapped => "(2) containers + blkio cap".into(),
            Self::Static {
                bucket_mib,
                quota_milli,
            } => format!(
                "(3) VMs, {bucket_mib} MiB/s, {:.1} cores",
                f64::from(*quota_milli) / 1000.0
            ),
            Self::Unthrottled => "VMs, no limits (observe)".into(),
            Self::Colo => "(4) VMs under colo".into(),
        }
    }

    /// Whether its offline jobs are MicroVMs.
    pub fn vms(&self) -> bool {
        matches!(self, Self::Static { .. } | Self::Unthrottled | Self::Colo)
    }
}

/// The benchmark's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Repetitions of every arm.
    pub repeats: usize,
    /// Peak transactions per second.
    pub peak_rate: f64,
    /// Trough transactions per second.
    pub trough_rate: f64,
    /// Seconds per phase.
    pub phase_secs: u64,
    /// Peak + trough cycles per run.
    pub cycles: usize,
    /// pgbench clients.
    pub clients: u32,
    /// pgbench scale (`-i -s`).
    pub scale: u32,
    /// Offline jobs per arm.
    pub jobs: u32,
    /// One offline work unit.
    pub unit: WorkUnit,
    /// The sweep of (3): per-VM buckets, MiB/s.
    pub buckets_mib: Vec<u64>,
    /// The sweep of (3): offline CPU quotas, millicores.
    pub quotas_milli: Vec<u32>,
    /// The cap of (2), MiB/s.
    pub container_cap_mib: u64,
    /// Run the unthrottled VMs (the reference of the 25 % goal).
    pub unthrottled: bool,
    /// The SLO colo's loop is given (p99, ms) for the pushed SLI.
    pub slo_p99_ms: f64,
    /// Results go here (the work directory, on the disk under test, too).
    pub out_dir: PathBuf,
    /// Policy for (4) (default: the thesis policy, see docs/qos.md).
    pub policy: Option<String>,
}

impl Config {
    /// `--quick`: one repetition of one short peak and trough, one static setting.
    pub fn quick(out_dir: PathBuf) -> Self {
        Self {
            repeats: 1,
            phase_secs: 10,
            cycles: 1,
            buckets_mib: vec![32],
            quotas_milli: vec![500],
            unthrottled: false,
            ..Self::full(out_dir)
        }
    }

    /// The full run: 5 repetitions, two cycles of 20 s phases, the coarse sweep
    /// (8, 32, 128, 256 MiB/s × 0.1, 0.5, 2 cores).
    pub fn full(out_dir: PathBuf) -> Self {
        Self {
            repeats: 5,
            peak_rate: 300.0,
            trough_rate: 30.0,
            phase_secs: 20,
            cycles: 2,
            clients: 4,
            scale: 30,
            jobs: 2,
            unit: WorkUnit {
                io_mib: 64,
                mem_mib: 256,
                cpu_units: 0,
            },
            buckets_mib: vec![8, 32, 128, 256],
            quotas_milli: vec![100, 500, 2000],
            container_cap_mib: 32,
            unthrottled: true,
            slo_p99_ms: 4.0,
            out_dir,
            policy: None,
        }
    }

    /// The arms of one repetition, in table order.
    pub fn arms(&self) -> Vec<Arm> {
        let mut v = vec![Arm::Alone, Arm::Container, Arm::ContainerCapped];
        for &bucket_mib in &self.buckets_mib {
            for &quota_milli in &self.quotas_milli {
                v.push(Arm::Static {
                    bucket_mib,
                    quota_milli,
                });
            }
        }
        if self.unthrottled {
            v.push(Arm::Unthrottled);
        }
        v.push(Arm::Colo);
        v
    }

    /// Checks the settings before anything starts.
    pub fn check(&self) -> Result<(), String> {
        if pgbench::schedule(
            self.peak_rate,
            self.trough_rate,
            self.phase_secs,
            self.cycles,
        )
        .is_empty()
        {
            return Err(format!(
                "no load: --peak-rate {}, --trough-rate {}, --phase-secs {} and --cycles {} must all be positive",
                self.peak_rate, self.trough_rate, self.phase_secs, self.cycles
            ));
        }
        if self.unit.io_mib == 0 {
            return Err(
                "--unit-io-mib must be at least 1 (work units are counted from the bytes written)"
                    .into(),
            );
        }
        if self.buckets_mib.contains(&0) || self.quotas_milli.contains(&0) {
            return Err("--buckets and --quotas take positive values (MiB/s, cores)".into());
        }
        if self.repeats == 0 || self.jobs == 0 {
            return Err("--repeats and --jobs must be at least 1".into());
        }
        Ok(())
    }
}

/// One run of one arm.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The arm.
    pub arm: Arm,
    /// Repetition (0-based).
    pub rep: usize,
    /// Latency over every phase (incl. schedule lag), ms: p50.
    pub p50_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// p99.9.
    pub p999_ms: f64,
    /// Completed transactions.
    pub txns: u64,
    /// Skipped or failed transactions, and phases whose pgbench failed.
    pub not_done: u64,
    /// Offline work units per second.
    pub units_per_s: f64,
    /// Offline CPU, cores (the agent's root).
    pub offline_cpu: f64,
    /// Stolen share of CPU time (0–1).
    pub steal: f64,
    /// 1-minute load average before the run.
    pub load_before: f64,
    /// The loop's squeezes and releases per phase (colo; empty otherwise).
    pub phases: Vec<PhaseActions>,
    /// The loop's applied actions.
    pub actions: Vec<LoggedAction>,
    /// Seconds the load ran.
    pub window_s: f64,
}

/// Runs the benchmark: PostgreSQL's cluster and cgroup, every arm `repeats` times, the
/// artefacts (`runs.csv`, `runs.json`, `actions.csv`, `thesis.md`) and the table.
pub fn run(cfg: &Config, bins: &Bins) -> Result<Vec<RunResult>, HostError> {
    cfg.check().map_err(HostError::Missing)?;
    Postgres::available()?;
    std::fs::create_dir_all(&cfg.out_dir).map_err(|source| HostError::Io {
        op: "mkdir",
        path: cfg.out_dir.clone(),
        source,
    })?;
    let started = Instant::now();
    let id = std::process::id();
    let online = BenchCgroup::create(
        &format!("colo-bench-thesis-online-{id}"),
        &["cpu", "cpuacct", "memory", "blkio"],
        Some(4 << 30),
    )?;
    let r = with_online(cfg, bins, &online, started);
    online.remove();
    run::remove_everywhere(online.name());
    r
}

fn with_online(
    cfg: &Config,
    bins: &Bins,
    online: &BenchCgroup,
    started: Instant,
) -> Result<Vec<RunResult>, HostError> {
    let work = cfg.out_dir.join("work");
    let pg = Postgres::start(&work.join("pg"), online)?;
    eprintln!(
        "colo-bench thesis: PostgreSQL up; pgbench -i -s {} ({:.0} s elapsed)",
        cfg.scale,
        started.elapsed().as_secs_f64()
    );
    pg.init_pgbench(cfg.scale, online)?;
    let arms = cfg.arms();
    let total = arms.len() * cfg.repeats;
    let mut results = Vec::new();
    let mut failure = None;
    'reps: for rep in 0..cfg.repeats {
        for k in 0..arms.len() {
            let arm = arms[(k + rep) % arms.len()];
            match run::one_run(cfg, bins, online, &pg, arm, rep, &work) {
                Ok(r) => {
                    eprintln!(
                        "colo-bench thesis: [{}/{total}] {:<18} rep {rep}: p50 {:.2} p99 {:.2} p99.9 {:.2} ms, {} txns, {:.2} units/s, offline {:.2} cores, {} actions, steal {:.1}%, load {:.2} ({:.0} s elapsed)",
                        results.len() + 1,
                        arm.key(),
                        r.p50_ms,
                        r.p99_ms,
                        r.p999_ms,
                        r.txns,
                        r.units_per_s,
                        r.offline_cpu,
                        r.actions.len(),
                        r.steal * 100.0,
                        r.load_before,
                        started.elapsed().as_secs_f64()
                    );
                    results.push(r);
                    report::write_artefacts(&cfg.out_dir, &results)?;
                }
                Err(e) => {
                    failure = Some(e);
                    break 'reps;
                }
            }
        }
    }
    drop(pg);
    // The jobs' disks, volumes and image, the agent's state: the logs and artefacts stay.
    let _ = std::fs::remove_dir_all(&work);
    let t = table(cfg, &results, started.elapsed());
    write_file(&cfg.out_dir.join("thesis.md"), &t)?;
    println!("{t}");
    match failure {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arms_hold_the_sweep_between_the_containers_and_colo() {
        let q = Config::quick(PathBuf::from("x"));
        assert_eq!(
            q.arms(),
            [
                Arm::Alone,
                Arm::Container,
                Arm::ContainerCapped,
                Arm::Static {
                    bucket_mib: 32,
                    quota_milli: 500
                },
                Arm::Colo
            ]
        );
        let f = Config::full(PathBuf::from("x"));
        assert_eq!(f.arms().len(), 3 + 4 * 3 + 2);
        assert!(f.repeats >= 5);
        assert!(q.check().is_ok() && f.check().is_ok());
        assert_eq!(
            Arm::Static {
                bucket_mib: 8,
                quota_milli: 100
            }
            .key(),
            "static-8M-100m"
        );
    }

    #[test]
    fn settings_that_measure_nothing_are_refused_with_the_flag() {
        let mut c = Config::quick(PathBuf::from("x"));
        c.phase_secs = 0;
        assert!(c.check().unwrap_err().contains("--phase-secs 0"));
        let mut c = Config::quick(PathBuf::from("x"));
        c.unit.io_mib = 0;
        assert!(c.check().unwrap_err().contains("--unit-io-mib"));
        let mut c = Config::quick(PathBuf::from("x"));
        c.buckets_mib = vec![0];
        assert!(c.check().unwrap_err().contains("--buckets"));
    }
}
