//! `colo-scheduler`: the scheduler plugin daemon. Agents stream node reports to its gRPC port;
//! kube-scheduler calls its extender verbs over HTTP; Prometheus scrapes `/metrics`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use colo_policy::scoring::ScoringParams;
use colo_scheduler::{BatchPodSelector, SchedulerConfig, StaleNodes};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StaleArg {
    /// Stale nodes take no batch work.
    Filter,
    /// Stale nodes pass the filter with the neutral score.
    Neutral,
}

/// colo's scheduler plugin: node reports in, Kubernetes scheduler-extender answers out.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address agents stream reports to (gRPC).
    #[arg(
        long,
        env = "COLO_SCHEDULER_GRPC_LISTEN",
        default_value = "0.0.0.0:9470"
    )]
    grpc_listen: SocketAddr,
    /// Address of the extender verbs, /metrics, /healthz and /nodes (HTTP).
    #[arg(
        long,
        env = "COLO_SCHEDULER_HTTP_LISTEN",
        default_value = "0.0.0.0:9471"
    )]
    http_listen: SocketAddr,
    /// Age after which a node's last report is stale (e.g. 180s, 2m30s; colo's duration
    /// grammar, as in policy files).
    #[arg(long, env = "COLO_SCHEDULER_STALE_AFTER", default_value = "180s", value_parser = colo_config::units::parse_duration)]
    stale_after: Duration,
    /// What stale (or never seen) nodes get.
    #[arg(
        long,
        env = "COLO_SCHEDULER_STALE_NODES",
        value_enum,
        default_value = "filter"
    )]
    stale_nodes: StaleArg,
    /// Score 0..10 of stale nodes when --stale-nodes=neutral.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=10))]
    neutral_score: u8,
    /// Path prefix of the extender verbs ({prefix}/filter, /prioritize, /preempt).
    #[arg(long, env = "COLO_SCHEDULER_EXTENDER_PREFIX", default_value = "/colo")]
    extender_prefix: String,
    /// Priority class marking batch pods (repeatable).
    #[arg(long = "batch-priority-class", value_name = "NAME")]
    batch_priority_classes: Vec<String>,
    /// Label marking batch pods, KEY=VALUE or KEY for any value (repeatable; default
    /// colo.io/qos=batch).
    #[arg(long = "batch-label", value_name = "KEY[=VALUE]")]
    batch_labels: Vec<String>,
    /// Extended resource with batch CPU in millicores; pods requesting it are batch.
    #[arg(long, default_value = colo_scheduler::config::DEFAULT_BATCH_CPU_RESOURCE)]
    batch_cpu_resource: String,
    /// Extended resource with batch memory in bytes; pods requesting it are batch.
    #[arg(long, default_value = colo_scheduler::config::DEFAULT_BATCH_MEMORY_RESOURCE)]
    batch_memory_resource: String,
    /// Policy files or directories (as the agent's `policy.paths`) whose `scoring` section sets
    /// the admission thresholds and score weights; default: colo's built-in defaults.
    #[arg(
        long = "policy",
        value_name = "PATH",
        env = "COLO_SCHEDULER_POLICY",
        value_delimiter = ','
    )]
    policy: Vec<std::path::PathBuf>,
    /// Override `scoring.filter.refuse_above`: score (0..100) above which a node takes no batch
    /// work.
    #[arg(long)]
    refuse_above: Option<f64>,
    /// Override `scoring.filter.accept_below`: score below which a refusing node takes batch
    /// work again.
    #[arg(long)]
    accept_below: Option<f64>,
    /// Log format: `text` (no timestamps under systemd, colours only on a terminal) or `json`
    /// (one object a line, for log collectors). The level comes from `COLO_LOG` (a tracing
    /// filter: `info`, `colo_scheduler=debug`), as colo-agent's does.
    #[arg(long, env = "COLO_SCHEDULER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

impl Args {
    fn config(&self) -> Result<SchedulerConfig, String> {
        let mut scoring = if self.policy.is_empty() {
            ScoringParams::default()
        } else {
            let policy = colo_config::load_policy(&self.policy).map_err(|e| e.to_string())?;
            ScoringParams::from(&policy.scoring)
        };
        let a = &mut scoring.admission;
        a.refuse_above = self.refuse_above.unwrap_or(a.refuse_above);
        a.accept_below = self.accept_below.unwrap_or(a.accept_below);
        if !(0.0..=100.0).contains(&a.refuse_above) || !(0.0..=100.0).contains(&a.accept_below) {
            return Err("--refuse-above and --accept-below must be within 0..100".into());
        }
        if a.accept_below >= a.refuse_above {
            return Err(format!(
                "accept_below {} is not below refuse_above {}: set it lower, the gap is the \
                 hysteresis band",
                a.accept_below, a.refuse_above
            ));
        }
        if !self.extender_prefix.is_empty() && !self.extender_prefix.starts_with('/') {
            return Err(format!(
                "--extender-prefix {:?} must start with '/' (or be empty)",
                self.extender_prefix
            ));
        }
        let mut batch = BatchPodSelector {
            priority_classes: self.batch_priority_classes.clone(),
            cpu_resource: self.batch_cpu_resource.clone(),
            memory_resource: self.batch_memory_resource.clone(),
            ..BatchPodSelector::default()
        };
        if !self.batch_labels.is_empty() {
            batch.labels = self
                .batch_labels
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
        }
        Ok(SchedulerConfig {
            stale_after: self.stale_after,
            stale_nodes: match self.stale_nodes {
                StaleArg::Filter => StaleNodes::Filter,
                StaleArg::Neutral => StaleNodes::Neutral,
            },
            neutral_score: self.neutral_score,
            extender_prefix: self.extender_prefix.clone(),
            batch,
            scoring,
            ..SchedulerConfig::default()
        })
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed before anything is served, so a
/// signal during start-up is never lost to the default action.
fn termination() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

/// Logs to stderr as colo-agent does: the filter from `COLO_LOG` (default `info`), `json` or
/// text; text has no timestamps under systemd (journald adds them) and ANSI colours only when
/// stderr is a terminal and `NO_COLOR` is unset, so a log file or collector gets plain lines.
fn init_logging(format: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("COLO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour && !journald);
    if format == "json" {
        builder.json().init();
    } else if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_format);
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let terminated = match termination() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot install the SIGTERM/SIGINT handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|e| {
            format!(
                "cannot listen on {addr} ({what}): {e}; pick a free address with --{what}-listen"
            )
        })
    };
    let (grpc, http) = match tokio::try_join!(
        bind(args.grpc_listen, "grpc"),
        bind(args.http_listen, "http")
    ) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match colo_scheduler::start(config, grpc, http) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match running.run_until(terminated).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
