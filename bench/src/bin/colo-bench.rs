//! `colo-bench`: colo's QoS benchmarks (run as root on a quiet machine; see docs/qos.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use colo_bench::headline::{self, Mode, Scenario};
use colo_bench::services::Bins;

/// colo's QoS benchmarks.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// nginx under open-loop load, alone and beside offline VMs (no limits, static weight, colo).
    Headline {
        /// Scenarios: cpu, memory, io (comma-separated).
        #[arg(long, default_value = "cpu,memory,io", value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Modes: alone, unlimited, static, colo, control (comma-separated).
        #[arg(
            long,
            default_value = "alone,unlimited,static,colo,control",
            value_delimiter = ','
        )]
        modes: Vec<String>,
        /// Repetitions.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Seconds per run (warm-up included).
        #[arg(long, default_value_t = 40)]
        duration: u64,
        /// Seconds of warm-up not recorded.
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Requests per second.
        #[arg(long, default_value_t = 3000.0)]
        rate: f64,
        /// Offline VMs (1 vCPU each).
        #[arg(long, default_value_t = 2)]
        vms: u32,
        /// Memory scenario: MiB each VM touches (0: 85 % of MemAvailable over the VMs, at most 3,000).
        #[arg(long, default_value_t = 0)]
        mem_mib: u64,
        /// Results directory.
        #[arg(long, default_value = "bench-results/headline")]
        out: PathBuf,
        /// Policy file for mode (4) (default: the bench policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Highest stolen CPU share before a run is repeated.
        #[arg(long, default_value_t = 0.02)]
        max_steal: f64,
    },
    /// Online load doubles: time until the offline CPU drops (cpuacct every 10 ms).
    Reaction {
        /// Trials.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Requests per second before the step (doubled at the step).
        #[arg(long, default_value_t = 3000.0)]
        rate: f64,
        /// Seconds between trials (the quota grows back).
        #[arg(long, default_value_t = 10)]
        rest: u64,
        /// Leave the agent's root at the default CPU weight (colo as deployed gives it a low
        /// weight, as modes (3) and (4) of the headline benchmark).
        #[arg(long)]
        equal_weight: bool,
        /// Discard and re-run a trial where CPU used outside the online and offline cgroups
        /// (other processes) plus host steal exceeds this many cores.
        #[arg(long, default_value_t = 0.25)]
        max_foreign: f64,
        /// Instead of doubling the load, breach nginx's SLO through ReportSli (the loop's own
        /// path: signal → decision → cgroup write).
        #[arg(long)]
        sli_breach: bool,
        /// Confine the online cgroup (nginx and the load generator) to these CPUs through a
        /// cpuset, e.g. `0`, as an operator pins a latency-critical service; the offline VMs
        /// keep every CPU. Default: no cpuset, the kernel places the online tasks.
        #[arg(long)]
        online_cpus: Option<String>,
        /// Discard and re-run a trial whose node had more than this many idle cores in the
        /// second before the step (the VMs were not using all the CPU, so the step needed none
        /// of theirs).
        #[arg(long, default_value_t = 0.25)]
        max_idle_before: f64,
        /// Results directory.
        #[arg(long, default_value = "bench-results/reaction")]
        out: PathBuf,
    },
    /// PostgreSQL (pgbench, peak and trough phases) beside IO- and memory-heavy offline jobs:
    /// alone, best-effort containers, containers with a blkio cap, MicroVMs with static IO
    /// buckets and CPU quotas (a sweep), and MicroVMs under colo's loop.
    Thesis {
        /// About 3 minutes after the build: one repetition of one peak and one trough (10 s
        /// each), one static setting (32 MiB/s, 0.5 cores), no unthrottled arm.
        #[arg(long)]
        quick: bool,
        /// Repetitions (full mode default 5).
        #[arg(long)]
        repeats: Option<usize>,
        /// Seconds per phase (full 20, quick 10).
        #[arg(long)]
        phase_secs: Option<u64>,
        /// Peak + trough cycles per run (full 2, quick 1).
        #[arg(long)]
        cycles: Option<usize>,
        /// Peak transactions per second.
        #[arg(long, default_value_t = 300.0)]
        peak_rate: f64,
        /// Trough transactions per second.
        #[arg(long, default_value_t = 30.0)]
        trough_rate: f64,
        /// Offline jobs per arm.
        #[arg(long, default_value_t = 2)]
        jobs: u32,
        /// Work unit: MiB written.
        #[arg(long, default_value_t = 64)]
        unit_io_mib: u64,
        /// Work unit: MiB of memory touched.
        #[arg(long, default_value_t = 256)]
        unit_mem_mib: u64,
        /// Work unit: CPU units.
        #[arg(long, default_value_t = 0)]
        unit_cpu: u64,
        /// Static sweep of (3): per-VM buckets, MiB/s (comma-separated; full 8,32,128,256).
        #[arg(long, value_delimiter = ',')]
        buckets: Option<Vec<u64>>,
        /// Static sweep of (3): offline CPU quotas, cores (comma-separated; full 0.1,0.5,2).
        #[arg(long, value_delimiter = ',')]
        quotas: Option<Vec<f64>>,
        /// The blkio cap of (2), MiB/s.
        #[arg(long, default_value_t = 32)]
        container_cap: u64,
        /// The p99 SLO (ms) given to colo's loop for the pushed SLI.
        #[arg(long, default_value_t = 4.0)]
        slo_p99_ms: f64,
        /// pgbench scale.
        #[arg(long, default_value_t = 30)]
        scale: u32,
        /// Results directory (also the work directory: PostgreSQL's cluster and the jobs'
        /// files live there, so it must be on the disk under test).
        #[arg(long, default_value = "bench-results/thesis")]
        out: PathBuf,
        /// Policy file for (4) (default: the thesis policy).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// The agent's CPU and RSS with many idle VMs and the loop running.
    Overhead {
        /// VMs.
        #[arg(long, default_value_t = 50)]
        vms: u32,
        /// Seconds measured.
        #[arg(long, default_value_t = 60)]
        window: u64,
        /// Results directory.
        #[arg(long, default_value = "bench-results/overhead")]
        out: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let bins = Bins::beside_me();
    let r = match cli.cmd {
        Cmd::Headline {
            scenarios,
            modes,
            repeats,
            duration,
            warmup,
            rate,
            vms,
            mem_mib,
            out,
            policy,
            max_steal,
        } => {
            let parse_all = || -> Result<(Vec<Scenario>, Vec<Mode>), String> {
                // Checked before any VM starts: the load generator refuses a run with nothing
                // recorded, and that would surface only after the first run's setup.
                if duration <= warmup {
                    return Err(format!(
                        "--duration {duration} must be longer than --warmup {warmup} (seconds; the warm-up is not recorded)"
                    ));
                }
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err(format!(
                        "--rate {rate} must be a positive number of requests per second"
                    ));
                }
                let s = scenarios
                    .iter()
                    .map(|x| {
                        Scenario::parse(x)
                            .ok_or_else(|| format!("unknown scenario {x:?} (cpu, memory, io)"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let m = modes
                    .iter()
                    .map(|x| {
                        Mode::parse(x).ok_or_else(|| {
                            format!("unknown mode {x:?} (alone, unlimited, static, colo, control)")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((s, m))
            };
            match parse_all() {
                Err(e) => Err(e),
                Ok((scenarios, modes)) => {
                    let policy = match policy.map(std::fs::read_to_string).transpose() {
                        Ok(p) => p,
                        Err(e) => {
                            eprintln!("colo-bench: policy: {e}");
                            std::process::exit(2);
                        }
                    };
                    let cfg = headline::Config {
                        scenarios,
                        modes,
                        repeats,
                        duration: Duration::from_secs(duration),
                        warmup: Duration::from_secs(warmup),
                        rate,
                        vms,
                        mem_touch_mib: mem_mib,
                        out_dir: absolute(out),
                        policy,
                        max_steal,
                        ..headline::Config::default()
                    };
                    headline::run(&cfg, &bins)
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            }
        }
        Cmd::Reaction {
            trials,
            rate,
            rest,
            out,
            equal_weight,
            max_foreign,
            sli_breach,
            online_cpus,
            max_idle_before,
        } => {
            let cfg = colo_bench::reaction::Config {
                trials,
                rate,
                rest: Duration::from_secs(rest),
                low_weight: !equal_weight,
                max_foreign,
                trigger: if sli_breach {
                    colo_bench::reaction::Trigger::SliBreach
                } else {
                    colo_bench::reaction::Trigger::LoadDoubles
                },
                out_dir: absolute(out),
                online_cpus,
                max_idle_before,
                ..Default::default()
            };
            colo_bench::reaction::run(&cfg, &bins)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Cmd::Thesis {
            quick,
            repeats,
            phase_secs,
            cycles,
            peak_rate,
            trough_rate,
            jobs,
            unit_io_mib,
            unit_mem_mib,
            unit_cpu,
            buckets,
            quotas,
            container_cap,
            slo_p99_ms,
            scale,
            out,
            policy,
        } => {
            use colo_bench::thesis;
            let out = absolute(out);
            let mut cfg = if quick {
                thesis::Config::quick(out)
            } else {
                thesis::Config::full(out)
            };
            cfg.repeats = repeats.unwrap_or(cfg.repeats);
            cfg.phase_secs = phase_secs.unwrap_or(cfg.phase_secs);
            cfg.cycles = cycles.unwrap_or(cfg.cycles);
            cfg.peak_rate = peak_rate;
            cfg.trough_rate = trough_rate;
            cfg.jobs = jobs;
            cfg.unit = thesis::WorkUnit {
                io_mib: unit_io_mib,
                mem_mib: unit_mem_mib,
                cpu_units: unit_cpu,
            };
            cfg.buckets_mib = buckets.unwrap_or(cfg.buckets_mib);
            if let Some(q) = quotas {
                cfg.quotas_milli = q
                    .iter()
                    .map(|c| (c * 1000.0).round().clamp(0.0, 1e6) as u32)
                    .collect();
            }
            cfg.container_cap_mib = container_cap;
            cfg.slo_p99_ms = slo_p99_ms;
            cfg.scale = scale;
            match policy.map(std::fs::read_to_string).transpose() {
                Ok(p) => cfg.policy = p,
                Err(e) => {
                    eprintln!("colo-bench: --policy: {e}");
                    std::process::exit(2);
                }
            }
            thesis::run(&cfg, &bins)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Cmd::Overhead { vms, window, out } => {
            let cfg = colo_bench::overhead::Config {
                vms,
                window: Duration::from_secs(window),
                out_dir: absolute(out),
            };
            colo_bench::overhead::run(&cfg, &bins)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = r {
        eprintln!("colo-bench: {e}");
        std::process::exit(1);
    }
}

/// The results directory as an absolute path: nginx resolves the relative paths in its
/// configuration against its prefix (`-p`), so a relative `--out` would point it elsewhere.
fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}
