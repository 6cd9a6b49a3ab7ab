//! The headline benchmark: nginx (one worker, a small file) under a fixed-rate open-loop load,
//! alone and beside offline MicroVMs, with no limits, with a static low-weight cgroup, and under
//! colo; plus a control row with the same hog as plain processes under colo.
//!
//! Each run measures the load generator's latency percentiles (from each request's due time)
//! and achieved rate, and over the same window: the VMs' progress, the offline subtree's CPU
//! time (cpuacct), the node's busy and stolen CPU (`/proc/stat`), and colo-agent's own CPU and
//! memory. Modes are interleaved within each repetition in a rotating order; a run with high
//! steal is discarded and run again.
//!
//! Here: the modes, the settings and the repetition loop; `one_run.rs` runs and measures one
//! mode once, `host_setup.rs` holds the policy and the cgroup weights the modes set, and
//! `report.rs` writes the CSVs and the table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::host::{BenchCgroup, HostError};
use crate::services::{Bins, Nginx, write_file};
use crate::validity::{self, InvalidRun, load_summary, log_excerpt};

mod host_setup;
mod one_run;
mod report;

use host_setup::cleanup_leftovers;
pub use host_setup::{bench_policy, reset_weight, set_low_weight};
use one_run::one_run;
pub use report::table;
use report::{CSV_HEADER, csv_row, summary_csv};

/// The agent's cgroup root during the benchmark.
pub const ROOT: &str = "colo-bench";
/// The online service's cgroup.
pub const ONLINE: &str = "colo-bench-online";

/// The offline hog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Burn every vCPU.
    Cpu,
    /// Touch most free memory, then burn.
    Memory,
    /// `O_DIRECT` writes through virtio-blk to a file on nginx's disk.
    Io,
}

impl Scenario {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Io => "io",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Self::Cpu),
            "memory" | "mem" => Some(Self::Memory),
            "io" => Some(Self::Io),
            _ => None,
        }
    }
}

/// What runs beside nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// (1) nothing.
    Alone,
    /// (2) VMs, no limits (agent in `observe` mode).
    Unlimited,
    /// (3) VMs in a static low-weight cgroup (agent in `observe` mode).
    Static,
    /// (4) VMs under colo (agent in `enforce` mode).
    Colo,
    /// The same hog as plain stress-ng processes under colo.
    Control,
}

impl Mode {
    /// The modes whose offline side sits under a low-weight agent root (`cpu.shares = 2` on v1,
    /// `cpu.weight = 1` on v2): (3) alone, and colo as deployed (docs/operations.md: the agent's
    /// slice gets a low CPU weight, as koordlet's best-effort tier; the QoS loop acts on top).
    pub fn low_weight_root(self) -> bool {
        matches!(self, Mode::Static | Mode::Colo | Mode::Control)
    }

    /// All, in table order.
    pub const ALL: [Mode; 5] = [
        Mode::Alone,
        Mode::Unlimited,
        Mode::Static,
        Mode::Colo,
        Mode::Control,
    ];

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Alone => "(1) alone",
            Self::Unlimited => "(2) + VMs, no limits",
            Self::Static => "(3) + VMs, static low weight",
            Self::Colo => "(4) + VMs under colo",
            Self::Control => "control: stress-ng under colo",
        }
    }

    /// Short name (CSV, CLI).
    pub fn key(self) -> &'static str {
        match self {
            Self::Alone => "alone",
            Self::Unlimited => "unlimited",
            Self::Static => "static",
            Self::Colo => "colo",
            Self::Control => "control",
        }
    }

    /// Parses a short name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.key() == s)
    }
}

/// The benchmark's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Scenarios.
    pub scenarios: Vec<Scenario>,
    /// Modes.
    pub modes: Vec<Mode>,
    /// Repetitions of every (scenario, mode).
    pub repeats: usize,
    /// Load per run (warm-up included).
    pub duration: Duration,
    /// Not recorded at the start of each run.
    pub warmup: Duration,
    /// Requests per second.
    pub rate: f64,
    /// Offline VMs (each 1 vCPU).
    pub vms: u32,
    /// Memory scenario: MiB each VM touches (0: 85 % of MemAvailable split over the VMs, at most
    /// 3,000 MiB each: the workload guest touches only RAM below the 3 GiB hole).
    pub mem_touch_mib: u64,
    /// IO scenario: MiB each VM writes per pass.
    pub io_mib: u64,
    /// Results go here.
    pub out_dir: PathBuf,
    /// Runs with more stolen CPU than this share are run again (at most twice).
    pub max_steal: f64,
    /// Policy for mode (4) (default: the bench policy, see docs/qos.md).
    pub policy: Option<String>,
    /// nginx port.
    pub port: u16,
    /// Served file size, bytes.
    pub file_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scenarios: vec![Scenario::Cpu, Scenario::Memory, Scenario::Io],
            modes: Mode::ALL.to_vec(),
            repeats: 5,
            duration: Duration::from_secs(40),
            warmup: Duration::from_secs(5),
            rate: 3000.0,
            vms: 2,
            mem_touch_mib: 0,
            io_mib: 256,
            out_dir: PathBuf::from("bench-results"),
            max_steal: 0.02,
            policy: None,
            port: 18080,
            file_size: 1024,
        }
    }
}

/// One run's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Scenario.
    pub scenario: Scenario,
    /// Mode.
    pub mode: Mode,
    /// Repetition (0-based).
    pub rep: usize,
    /// Latency p50, ms.
    pub p50_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// p99.9, ms.
    pub p999_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// Answered requests per second.
    pub achieved_rate: f64,
    /// Target rate.
    pub target_rate: f64,
    /// Failed or unanswered requests.
    pub errors: u64,
    /// Offline progress units per second (VM work units + IO bytes; stress-ng bogo ops).
    pub progress_per_s: f64,
    /// Offline CPU, cores (cpuacct of the offline subtree over the window).
    pub offline_cpu: f64,
    /// Node busy CPU share (0–1).
    pub node_util: f64,
    /// Idle CPU, cores (capacity − busy).
    pub idle_cpu: f64,
    /// Stolen share of CPU time (0–1).
    pub steal: f64,
    /// colo-agent CPU, % of one core.
    pub agent_cpu_pct: f64,
    /// colo-agent RSS at the end, MiB.
    pub agent_rss_mib: f64,
    /// QoS actions the agent applied in the run.
    pub actions: usize,
    /// 1-minute load average before the run.
    pub load_before: f64,
    /// Window of the counters, s.
    pub window_s: f64,
}

/// Attempts per run: a run with high steal, or one that did not measure nginx, is run again.
const MAX_ATTEMPTS: usize = 3;

/// A run that did not measure nginx (see [`crate::validity`]): left out of every figure.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The run's measurements, as far as they go.
    pub run: RunResult,
    /// Which attempt at the run it was (1-based).
    pub attempt: usize,
    /// Why it is invalid.
    pub cause: InvalidRun,
}

/// Runs the benchmark, writing `runs.csv` as it goes and the table at the end.
///
/// A run that does not measure nginx is reported with its cause and run again; when it stays
/// invalid (or nginx answered nothing at all: it is broken, not busy), the benchmark stops,
/// writes the table of what it measured (its goals `NOT measured`) and returns
/// [`HostError::NotMeasured`].
pub fn run(cfg: &Config, bins: &Bins) -> Result<Vec<RunResult>, HostError> {
    std::fs::create_dir_all(&cfg.out_dir).map_err(|source| HostError::Io {
        op: "mkdir",
        path: cfg.out_dir.clone(),
        source,
    })?;
    let started = Instant::now();
    let v2 = crate::host::is_v2();
    cleanup_leftovers();
    let online = BenchCgroup::create(
        ONLINE,
        &["cpu", "cpuacct", "memory", "blkio"],
        Some(4 << 30),
    )?;
    let work = cfg.out_dir.join("work");
    let nginx = Nginx::start(&work.join("nginx"), cfg.port, cfg.file_size, &online)?;
    let mut results: Vec<RunResult> = Vec::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    let mut stopped = None;
    let csv_path = cfg.out_dir.join("runs.csv");
    write_file(&csv_path, &format!("{}\n", CSV_HEADER))?;
    let total = cfg.repeats * cfg.scenarios.len() * cfg.modes.len();
    let mut done = 0;
    'runs: for rep in 0..cfg.repeats {
        for &scenario in &cfg.scenarios {
            // Rotate the order each repetition so no mode always runs first or last.
            let n = cfg.modes.len();
            for k in 0..n {
                let mode = cfg.modes[(k + rep) % n];
                let what = format!("{} {} rep {rep}", scenario.name(), mode.key());
                let mut attempt = 0;
                let r = loop {
                    attempt += 1;
                    nginx.rotate_log();
                    let log_from = nginx.error_log_len();
                    let (r, lg) =
                        one_run(cfg, bins, &online, &nginx, scenario, mode, rep, v2, &work)?;
                    if let Err(cause) = validity::check(&lg, cfg.rate) {
                        let evidence = format!(
                            "{}\n  {}",
                            load_summary(&lg),
                            log_excerpt(
                                &format!("nginx's error log {}", nginx.error_log().display()),
                                &nginx.error_log_since(log_from),
                                3
                            )
                        );
                        append_csv(&csv_path, &csv_row(&r, Some(&cause)))?;
                        rejected.push(Rejected {
                            run: r,
                            attempt,
                            cause: cause.clone(),
                        });
                        // Nothing answered: nginx is broken, not busy, and another try only
                        // costs time. The error returned says why, after the table.
                        if lg.ok == 0 || attempt >= MAX_ATTEMPTS {
                            break Err(HostError::NotMeasured {
                                run: format!(
                                    "headline {what} (attempt {attempt} of {MAX_ATTEMPTS})"
                                ),
                                cause,
                                evidence,
                            });
                        }
                        eprintln!(
                            "colo-bench: {what}: INVALID run (attempt {attempt} of {MAX_ATTEMPTS}), running it again: {cause}\n  {evidence}"
                        );
                        continue;
                    }
                    if r.steal <= cfg.max_steal || attempt >= MAX_ATTEMPTS {
                        break Ok(r);
                    }
                    eprintln!(
                        "colo-bench: {what}: steal {:.1}% > {:.1}%, running again",
                        r.steal * 100.0,
                        cfg.max_steal * 100.0
                    );
                };
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        stopped = Some(e);
                        break 'runs;
                    }
                };
                done += 1;
                eprintln!(
                    "colo-bench: [{done}/{total}] {:<6} {:<9} rep {rep}: p50 {:.3} p99 {:.3} p99.9 {:.3} ms, {:.0} req/s, offline {:.2} cores, progress {:.0}/s, steal {:.1}%, load {:.2} ({:.0} s elapsed)",
                    scenario.name(),
                    mode.key(),
                    r.p50_ms,
                    r.p99_ms,
                    r.p999_ms,
                    r.achieved_rate,
                    r.offline_cpu,
                    r.progress_per_s,
                    r.steal * 100.0,
                    r.load_before,
                    started.elapsed().as_secs_f64()
                );
                append_csv(&csv_path, &csv_row(&r, None))?;
                results.push(r);
            }
        }
    }
    drop(nginx);
    online.remove();
    let table = table(cfg, &results, &rejected, started.elapsed());
    write_file(&cfg.out_dir.join("headline.md"), &table)?;
    write_file(
        &cfg.out_dir.join("summary.csv"),
        &summary_csv(cfg, &results),
    )?;
    println!("{table}");
    match stopped {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

fn append_csv(path: &Path, row: &str) -> Result<(), HostError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|source| HostError::Io {
            op: "open",
            path: path.to_path_buf(),
            source,
        })?;
    writeln!(f, "{row}").map_err(|source| HostError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}
