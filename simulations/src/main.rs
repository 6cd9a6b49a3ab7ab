//! `colo-sim`: replays a cluster trace through colo's policy engine and scoring, and compares
//! it with no colocation and a static reservation.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use colo_policy::scoring::ScoringParams;
use colo_sim::alibaba;
use colo_sim::calibration::{Calibration, Coefficients};
use colo_sim::cluster::{Progress, SimConfig};
use colo_sim::compare::{self, Mode, ModeProgress, ModeSettings};
use colo_sim::controller::StaticReservation;
use colo_sim::report;
use colo_sim::trace::binary::{self, BinaryTrace};
use colo_sim::trace::synthetic::{OnlineNoise, SyntheticParams, SyntheticTrace};
use colo_sim::trace::{OnlineSample, TraceSource};

#[derive(Parser, Debug)]
#[command(
    name = "colo-sim",
    version,
    about = "Replays a cluster trace through colo's policy engine and scoring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the modes on one trace: table on stdout, CSV and plots in --out.
    Compare(CompareArgs),
    /// Writes a synthetic trace as a binary trace file.
    Generate {
        #[command(flatten)]
        synthetic: SyntheticArgs,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Converts Alibaba cluster-trace-v2018 CSV tables into a binary trace file.
    Convert(ConvertArgs),
    /// Writes a small sample in the Alibaba cluster-trace-v2018 CSV format.
    AlibabaSample {
        /// Directory to write the six tables into.
        #[arg(long)]
        out: PathBuf,
        /// Machines.
        #[arg(long, default_value_t = 4)]
        machines: u32,
        /// Minutes of trace.
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Prints the contention model's calibration and the coefficients derived from it.
    Calibration,
}

#[derive(Args, Debug)]
struct SyntheticArgs {
    /// Seed of the synthetic trace.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Nodes.
    #[arg(long, default_value_t = 4000)]
    nodes: u32,
    /// Days.
    #[arg(long, default_value_t = 8.0)]
    days: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 10)]
    step: u32,
    /// Share of nodes in the dedicated batch pool, 0..1.
    #[arg(long, default_value_t = 0.1)]
    batch_pool: f64,
    /// Offered batch load as a share of all cores, 0..1.
    #[arg(long, default_value_t = 0.4)]
    batch_load: f64,
}

impl SyntheticArgs {
    fn params(&self) -> SyntheticParams {
        SyntheticParams {
            seed: self.seed,
            nodes: self.nodes,
            days: self.days,
            step_secs: self.step,
            batch_pool: self.batch_pool,
            batch_load: self.batch_load,
            ..SyntheticParams::default()
        }
    }
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// A binary trace (from `generate` or `convert`); without it, a synthetic trace.
    #[arg(long)]
    trace: Option<PathBuf>,
    #[command(flatten)]
    synthetic: SyntheticArgs,
    /// Modes, comma-separated: no-colocation, static-reservation, colo, colo-observe.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "no-colocation,static-reservation,colo,colo-observe"
    )]
    modes: Vec<String>,
    /// colo policy files or directories (as the agent's `policy.paths`); default policy if none.
    #[arg(long)]
    policy: Vec<PathBuf>,
    /// Online p99 target, ms (SLO figures come from the contention model).
    #[arg(long, default_value_t = 0.5)]
    slo_p99_ms: f64,
    /// Static reservation: CPU share of each online node lent to batch, 0..1.
    #[arg(long, default_value_t = 0.25)]
    static_cpu: f64,
    /// Static reservation: memory share of each online node lent to batch, 0..1.
    #[arg(long, default_value_t = 0.25)]
    static_memory: f64,
    /// Threads (modes run side by side; one mode uses them all on node shards).
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Directory for summary.csv, series.csv and the plots.
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
    /// Skip the plots.
    #[arg(long)]
    no_plots: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Keep the heap on 4 KiB pages (by default it is moved onto transparent huge pages, which
    /// makes large runs faster and changes no result).
    #[arg(long)]
    small_pages: bool,
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// Directory holding machine_meta.csv, container_meta.csv, container_usage.csv,
    /// batch_task.csv, batch_instance.csv (and optionally machine_usage.csv).
    #[arg(long)]
    alibaba: PathBuf,
    /// The binary trace to write.
    #[arg(long)]
    out: PathBuf,
    /// Seconds per step.
    #[arg(long, default_value_t = 10)]
    step: u32,
    /// Keep only the first N machines (by id order).
    #[arg(long)]
    machines: Option<u32>,
    /// Start of the window, seconds of trace time (default: the first sample).
    #[arg(long)]
    from: Option<u32>,
    /// End of the window, seconds of trace time (default: the last timestamp seen).
    #[arg(long)]
    until: Option<u32>,
    /// Memory of the largest machine, GiB (the trace normalises memory to it).
    #[arg(long, default_value_t = 512)]
    largest_memory_gib: u64,
    /// Disk bandwidth of every machine, MB/s (the trace has only percentages).
    #[arg(long, default_value_t = 1000)]
    disk_mb_per_sec: u64,
    /// Most cores per converted VM: instances of one task starting in the same step are
    /// merged into VMs of up to this many cores.
    #[arg(long, default_value_t = 8)]
    vm_max_cores: u32,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn update(&self, done: u64, total: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
        if done == total {
            self.0.finish();
        }
    }
}

struct Bars(Vec<Bar>);

impl ModeProgress for Bars {
    fn mode(&self, i: usize) -> &dyn Progress {
        self.0
            .get(i)
            .map_or(&() as &dyn Progress, |b| b as &dyn Progress)
    }
}

fn bars(modes: &[Mode], quiet: bool) -> Bars {
    let multi = MultiProgress::with_draw_target(if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template(
        "{prefix:>20} [{elapsed_precise}] {bar:40} {pos}/{len} steps ({eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    Bars(
        modes
            .iter()
            .map(|m| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(m.name());
                Bar(b)
            })
            .collect(),
    )
}

fn compare_cmd(a: &CompareArgs) -> Result<(), String> {
    let mut modes = Vec::new();
    for m in &a.modes {
        let mode = Mode::parse(m.trim()).ok_or_else(|| {
            format!(
                "--modes: unknown mode `{m}`; use no-colocation, static-reservation, colo, \
                 colo-observe"
            )
        })?;
        modes.push(mode);
    }
    let policy = if a.policy.is_empty() {
        None
    } else {
        Some(colo_config::load_policy(&a.policy).map_err(|e| e.to_string())?)
    };
    let settings = ModeSettings {
        static_reservation: StaticReservation {
            cpu: a.static_cpu,
            memory: a.static_memory,
        },
        policy,
    };
    // Scoring comes from the policy's `scoring` section, as colo-scheduler and the agent read
    // it; the defaults are the policy's defaults.
    let scoring = settings
        .policy
        .as_ref()
        .map_or_else(ScoringParams::default, |p| ScoringParams::from(&p.scoring));
    let cfg = SimConfig {
        slo_p99_ms: a.slo_p99_ms,
        threads: a.threads.max(1),
        scoring,
        huge_pages: !a.small_pages,
        ..SimConfig::default()
    };
    let params = a.synthetic.params();
    let open = || -> Result<Box<dyn TraceSource>, colo_sim::trace::TraceError> {
        Ok(match &a.trace {
            Some(p) => Box::new(BinaryTrace::open(p)?),
            None => Box::new(SyntheticTrace::new(&params)?),
        })
    };
    let description = open()
        .map_err(|e| e.to_string())?
        .info()
        .description
        .clone();
    let progress = bars(&modes, a.quiet);
    let results =
        compare::compare(open, &cfg, &modes, &settings, &progress).map_err(|e| e.to_string())?;
    print!("{}", report::table(&results, &description, cfg.slo_p99_ms));
    let files = compare::write_outputs(&a.out, &results, cfg.slo_p99_ms, !a.no_plots)
        .map_err(|e| e.to_string())?;
    let shown: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    println!("wrote {}", shown.join(", "));
    Ok(())
}

fn generate_cmd(s: &SyntheticArgs, out: &Path) -> Result<(), String> {
    let params = s.params();
    let mut t = SyntheticTrace::new(&params).map_err(|e| e.to_string())?;
    let info = t.info().clone();
    let mut vms = Vec::new();
    for step in 0..info.steps {
        t.arrivals(step, &mut vms).map_err(|e| e.to_string())?;
    }
    let model = t.online_model();
    let mut noise = vec![OnlineNoise::default(); info.nodes.len()];
    binary::write(
        out,
        &info,
        |step, row: &mut [OnlineSample]| {
            for (i, (s, n)) in row.iter_mut().zip(noise.iter_mut()).enumerate() {
                #[allow(clippy::cast_possible_truncation)]
                let i = i as u32;
                *s = model.sample(i, step, n);
            }
            Ok(())
        },
        &mut vms,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "wrote {}: {} nodes, {} steps of {} s, {} VMs",
        out.display(),
        info.nodes.len(),
        info.steps,
        info.step_secs,
        vms.len()
    );
    Ok(())
}

fn convert_cmd(a: &ConvertArgs) -> Result<(), String> {
    let opts = alibaba::ConvertOptions {
        step_secs: a.step,
        machines: a.machines,
        from_s: a.from,
        until_s: a.until,
        largest_memory_bytes: a.largest_memory_gib << 30,
        disk_bytes_per_sec: a.disk_mb_per_sec * 1_000_000,
        vm_max_millicores: a.vm_max_cores.max(1) * 1000,
    };
    let stats = alibaba::convert(&a.alibaba, &a.out, &opts).map_err(|e| e.to_string())?;
    println!("wrote {}: {stats}", a.out.display());
    Ok(())
}

fn calibration_cmd() {
    let c = Calibration::default();
    let k = Coefficients::derive(&c);
    println!("{c:#?}\n{k:#?}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Compare(a) => compare_cmd(a),
        Command::Generate { synthetic, out } => generate_cmd(synthetic, out),
        Command::Convert(a) => convert_cmd(a),
        Command::AlibabaSample {
            out,
            machines,
            minutes,
            seed,
        } => alibaba::sample::write_sample(out, *machines, *minutes, *seed)
            .map(|files| println!("wrote {} files in {}", files, out.display()))
            .map_err(|e| e.to_string()),
        Command::Calibration => {
            calibration_cmd();
            Ok(())
        }
    };
    let _ = std::io::stdout().flush();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("colo-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
