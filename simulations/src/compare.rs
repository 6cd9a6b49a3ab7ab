//! All modes on the same trace in one command.
//!
//! Modes run side by side, one per thread, while there are at least as many modes left as
//! threads; a single mode gets all threads (node shards). Either way every mode reads its own
//! copy of the trace, and results come back in the order the modes were asked for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cluster::{self, Progress, RunError, RunResult, SimConfig};
use crate::controller::NoColocation;
pub use crate::mode::{Mode, ModeSettings};
use crate::trace::{TraceError, TraceSource};

/// Progress reporting for several modes at once.
pub trait ModeProgress: Sync {
    /// The progress sink of mode number `i`.
    fn mode(&self, i: usize) -> &dyn Progress;
}

impl ModeProgress for () {
    fn mode(&self, _: usize) -> &dyn Progress {
        &()
    }
}

/// Runs `modes` over fresh copies of the trace from `open`.
///
/// # Errors
/// The first mode's error, in mode order.
pub fn compare<F>(
    open: F,
    cfg: &SimConfig,
    modes: &[Mode],
    settings: &ModeSettings,
    progress: &dyn ModeProgress,
) -> Result<Vec<RunResult>, RunError>
where
    F: Fn() -> Result<Box<dyn TraceSource>, TraceError> + Sync,
{
    let threads = cfg.threads.max(1);
    let side_by_side = threads.min(modes.len()).max(1);
    let per_mode = SimConfig {
        threads: (threads / side_by_side).max(1),
        ..cfg.clone()
    };
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<RunResult, RunError>>>> =
        modes.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..side_by_side {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&mode) = modes.get(i) else { break };
                    let r = open().map_err(RunError::from).and_then(|mut t| {
                        run_mode(mode, t.as_mut(), &per_mode, settings, progress.mode(i))
                    });
                    *results[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| Err(RunError::Config("a mode did not run".to_owned())))
        })
        .collect()
}

/// Runs one mode.
///
/// # Errors
/// [`RunError`] from the run, or when colo's modes have no policy engine.
pub fn run_mode(
    mode: Mode,
    trace: &mut dyn TraceSource,
    cfg: &SimConfig,
    settings: &ModeSettings,
    progress: &dyn Progress,
) -> Result<RunResult, RunError> {
    match mode {
        Mode::NoColocation => cluster::run(trace, cfg, &NoColocation, progress),
        Mode::StaticReservation => cluster::run(trace, cfg, &settings.static_reservation, progress),
        Mode::Colo | Mode::Observe => crate::colo::run(mode, trace, cfg, settings, progress),
    }
}

/// An output file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or directory cannot be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A plot failed.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
}

/// Writes `summary.csv`, `series.csv` and (with `plots`) the SVG and PNG plots into `dir`;
/// returns the files written.
///
/// # Errors
/// [`OutputError`] when a file cannot be written.
pub fn write_outputs(
    dir: &std::path::Path,
    results: &[RunResult],
    slo_p99_ms: f64,
    plots: bool,
) -> Result<Vec<std::path::PathBuf>, OutputError> {
    let io = |p: &std::path::Path| {
        let path = p.display().to_string();
        move |source| OutputError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut files = Vec::new();
    for (name, text) in [
        ("summary.csv", crate::report::summary_csv(results)),
        ("series.csv", crate::report::series_csv(results)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io(&p))?;
        files.push(p);
    }
    if plots {
        files.extend(crate::plot::write_plots(dir, results, slo_p99_ms)?);
    }
    Ok(files)
}
