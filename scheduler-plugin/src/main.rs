//! `colo-scheduler`: the scheduler plugin daemon. Agents stream node reports to its gRPC port;
//! kube-scheduler calls its extender verbs over HTTP; Prometheus scrapes `/metrics`.
//!
//! Both ports serve mutual TLS when given a certificate and a client CA, and plain TCP only on
//! loopback unless `--insecure-listen-any` says otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use colo_policy::scoring::ScoringParams;
use colo_scheduler::{
    BatchPodSelector, Limits, Listener, Port, SchedulerConfig, ServerTls, StaleNodes, TlsFiles,
};
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
    /// Address agents stream reports to (gRPC). Mutual TLS with --tls-cert, --tls-key and
    /// --grpc-client-ca; plain only on loopback unless --insecure-listen-any.
    #[arg(
        long,
        env = "COLO_SCHEDULER_GRPC_LISTEN",
        default_value = "127.0.0.1:9470"
    )]
    grpc_listen: SocketAddr,
    /// Address of the extender verbs, /metrics, /healthz and /nodes (HTTP). HTTPS with client
    /// certificates with --tls-cert, --tls-key and --http-client-ca; plain only on loopback
    /// unless --insecure-listen-any.
    #[arg(
        long,
        env = "COLO_SCHEDULER_HTTP_LISTEN",
        default_value = "127.0.0.1:9471"
    )]
    http_listen: SocketAddr,
    /// The scheduler's certificate chain (PEM), for every port that has a client CA.
    #[arg(long, env = "COLO_SCHEDULER_TLS_CERT", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// The scheduler's private key (PEM).
    #[arg(long, env = "COLO_SCHEDULER_TLS_KEY", value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that agents' certificates chain to: the gRPC port then serves mutual TLS,
    /// and a report is accepted only for a node its certificate names (CN or DNS SAN).
    #[arg(long, env = "COLO_SCHEDULER_GRPC_CLIENT_CA", value_name = "PATH")]
    grpc_client_ca: Option<PathBuf>,
    /// CA bundle (PEM) that kube-scheduler's (and Prometheus') client certificates chain to: the
    /// HTTP port then serves HTTPS and refuses clients without such a certificate.
    #[arg(long, env = "COLO_SCHEDULER_HTTP_CLIENT_CA", value_name = "PATH")]
    http_client_ca: Option<PathBuf>,
    /// Allow a plain (unauthenticated, unencrypted) port on a non-loopback address. Anyone who
    /// reaches it can then report any node and read the table.
    #[arg(long, env = "COLO_SCHEDULER_INSECURE_LISTEN_ANY")]
    insecure_listen_any: bool,
    /// Most nodes held; reports for new nodes beyond are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "COLO_SCHEDULER_MAX_NODES", default_value_t = colo_scheduler::config::DEFAULT_MAX_NODES)]
    max_nodes: usize,
    /// Drop a node from the table after it reported nothing for this long (e.g. 1h).
    #[arg(long, env = "COLO_SCHEDULER_FORGET_AFTER", default_value = "1h", value_parser = colo_config::units::parse_duration)]
    forget_after: Duration,
    /// Refuse reports whose timestamps are further ahead of this host's clock.
    #[arg(long, default_value = "60s", value_parser = colo_config::units::parse_duration)]
    max_clock_skew: Duration,
    /// Largest report message accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_report_bytes)]
    max_report_bytes: usize,
    /// Time a connection has for its TLS handshake (and the HTTP/2 preface on the gRPC port),
    /// and an HTTP client for each request header (idle keep-alive connections are closed after
    /// it too).
    #[arg(long, default_value = "10s", value_parser = colo_config::units::parse_duration)]
    header_read_timeout: Duration,
    /// Time an HTTP request has to deliver its body.
    #[arg(long, default_value = "30s", value_parser = colo_config::units::parse_duration)]
    body_read_timeout: Duration,
    /// Largest extender request body, in bytes.
    #[arg(long, default_value_t = SchedulerConfig::default().max_request_bytes)]
    max_request_bytes: usize,
    /// Bytes of HTTP request bodies held at once over all connections.
    #[arg(long, default_value_t = Limits::default().max_body_bytes_in_flight)]
    max_body_bytes_in_flight: usize,
    /// Nodes per /nodes and ListNodes page when the request names no limit (at most 5000).
    #[arg(long, default_value_t = Limits::default().nodes_page_size)]
    nodes_page_size: usize,
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
        let config = SchedulerConfig {
            stale_after: self.stale_after,
            stale_nodes: match self.stale_nodes {
                StaleArg::Filter => StaleNodes::Filter,
                StaleArg::Neutral => StaleNodes::Neutral,
            },
            neutral_score: self.neutral_score,
            extender_prefix: self.extender_prefix.clone(),
            batch,
            scoring,
            max_request_bytes: self.max_request_bytes,
            limits: Limits {
                max_nodes: self.max_nodes,
                forget_after: self.forget_after,
                max_clock_skew: self.max_clock_skew,
                max_report_bytes: self.max_report_bytes,
                header_read_timeout: self.header_read_timeout,
                body_read_timeout: self.body_read_timeout,
                max_body_bytes_in_flight: self.max_body_bytes_in_flight,
                nodes_page_size: self.nodes_page_size,
            },
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Each port's TLS files, or `None` for a plain port; checks that the TLS flags come
    /// together and that a plain port is on loopback or explicitly allowed elsewhere.
    fn tls_files(&self) -> Result<(Option<TlsFiles>, Option<TlsFiles>), String> {
        let any_ca = self.grpc_client_ca.is_some() || self.http_client_ca.is_some();
        let files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) if any_ca => Some((cert, key)),
            (Some(_), Some(_)) => {
                return Err(
                    "--tls-cert and --tls-key are set but no port has a client CA: add \
                     --grpc-client-ca (agents' CA) and/or --http-client-ca (kube-scheduler's CA)"
                        .into(),
                );
            }
            (None, None) if any_ca => {
                return Err(
                    "--grpc-client-ca / --http-client-ca need the scheduler's own \
                     certificate too: add --tls-cert and --tls-key"
                        .into(),
                );
            }
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together: give both".into()),
        };
        let port = |ca: &Option<PathBuf>| {
            ca.as_ref().zip(files).map(|(ca, (cert, key))| TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
            })
        };
        let (grpc, http) = (port(&self.grpc_client_ca), port(&self.http_client_ca));
        for (addr, tls, flag, ca_flag) in [
            (self.grpc_listen, &grpc, "--grpc-listen", "--grpc-client-ca"),
            (self.http_listen, &http, "--http-listen", "--http-client-ca"),
        ] {
            if tls.is_none() && !addr.ip().is_loopback() && !self.insecure_listen_any {
                return Err(format!(
                    "{flag} {addr} would serve plain TCP (no TLS, no client certificates) beyond \
                     loopback, so anyone who reaches it could report nodes or read the table: \
                     give --tls-cert, --tls-key and {ca_flag} to serve mutual TLS there, or \
                     listen on 127.0.0.1, or pass --insecure-listen-any \
                     (COLO_SCHEDULER_INSECURE_LISTEN_ANY=true) to accept that risk"
                ));
            }
        }
        Ok((grpc, http))
    }

    /// Warnings for plain ports the opt-in lets beyond loopback.
    fn warn_insecure(&self, grpc_tls: bool, http_tls: bool) {
        if !self.insecure_listen_any {
            return;
        }
        let mut exposed = false;
        for (addr, tls, what) in [
            (self.grpc_listen, grpc_tls, "reports (gRPC)"),
            (self.http_listen, http_tls, "extender (HTTP)"),
        ] {
            if !tls && !addr.ip().is_loopback() {
                exposed = true;
                tracing::warn!(
                    "--insecure-listen-any: the {what} port {addr} is plain TCP beyond loopback: \
                     anyone who reaches it can report any node or read the table; serve mutual \
                     TLS instead (see docs/operations.md)"
                );
            }
        }
        if !exposed {
            tracing::warn!(
                "--insecure-listen-any is set (no plain port is beyond loopback now, so it \
                 changes nothing)"
            );
        }
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

/// Re-reads the TLS files on every SIGHUP (certificate rotation), for as long as the process
/// runs. `hup` is installed before anything is served, so a SIGHUP never kills the process.
fn reload_on_sighup(mut hup: tokio::signal::unix::Signal, tls: colo_scheduler::TlsReloader) {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(0) => tracing::info!("SIGHUP: no port has TLS, nothing to reload"),
                Ok(n) => tracing::info!("SIGHUP: TLS files re-read for {n} port(s)"),
                Err(e) => tracing::error!("SIGHUP: {e}; the previous certificates stay in use"),
            }
        }
    });
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
    let (config, (grpc_tls, http_tls)) =
        match args.config().and_then(|c| Ok((c, args.tls_files()?))) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        };
    args.warn_insecure(grpc_tls.is_some(), http_tls.is_some());
    let load = |files: Option<TlsFiles>, port| {
        files
            .map(|f| ServerTls::load(f, port).map(Arc::new))
            .transpose()
    };
    let (grpc_tls, http_tls) =
        match load(grpc_tls, Port::Grpc).and_then(|g| Ok((g, load(http_tls, Port::Http)?))) {
            Ok(t) => t,
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
    let hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("cannot install the SIGHUP handler: {e}");
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
    let with_tls = |tcp, tls: Option<Arc<ServerTls>>| match tls {
        Some(t) => Listener::tls(tcp, t),
        None => Listener::plain(tcp),
    };
    let running =
        match colo_scheduler::start(config, with_tls(grpc, grpc_tls), with_tls(http, http_tls)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
    reload_on_sighup(hup, running.tls_reloader());
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
