//! Running colo-scheduler: the gRPC ingest and the HTTP extender on their listeners (plain or
//! mutual TLS, see [`listen`](crate::listen)), the sweep that forgets silent nodes, and graceful
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use colo_proto::report::node_reports_server::NodeReportsServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::{ConfigError, SchedulerConfig};
use crate::ingest::ReportService;
use crate::k8s::{HttpState, router};
use crate::listen::{self, Listener, Preface};
use crate::metrics as m;
use crate::table::NodeTable;
use crate::tls::{ServerTls, TlsError};

/// How long shutdown waits for connections to close before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A server that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot work.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A listener's address could not be read.
    #[error("cannot read the listening address: {0}")]
    Addr(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// A server task panicked or was cancelled.
    #[error("server task ended abnormally: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A server stopped without being asked to.
    #[error("the {0} server stopped on its own")]
    Ended(&'static str),
    /// Connections did not close within the grace period.
    #[error("connections still open {SHUTDOWN_GRACE:?} after shutdown began; closing them")]
    GraceExpired,
}

/// A running colo-scheduler.
#[derive(Debug)]
pub struct Running {
    /// Where agents stream reports (gRPC).
    pub grpc_addr: SocketAddr,
    /// Where kube-scheduler calls the extender, and `/metrics` is served (HTTP).
    pub http_addr: SocketAddr,
    /// The node table (for tests and embedding).
    pub table: Arc<NodeTable>,
    tls: TlsReloader,
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<std::io::Result<()>>,
}

/// The TLS configurations of a running server, to re-read their files (certificate rotation).
#[derive(Clone, Debug, Default)]
pub struct TlsReloader(Vec<Arc<ServerTls>>);

impl TlsReloader {
    /// Re-reads every listener's certificate, key and client CA; returns how many listeners
    /// have TLS. New handshakes use the new material; open connections keep theirs.
    ///
    /// # Errors
    /// The first [`TlsError`]; that listener keeps the material it had.
    pub fn reload(&self) -> Result<usize, TlsError> {
        for t in &self.0 {
            t.reload()?;
        }
        Ok(self.0.len())
    }
}

/// Starts serving on the given listeners (a `TcpListener` converts to a plain [`Listener`]).
///
/// # Errors
/// [`ServeError::Config`] when the configuration's limits cannot work; [`ServeError::Addr`]
/// when a listener's address cannot be read.
pub fn start(
    config: SchedulerConfig,
    grpc: impl Into<Listener>,
    http: impl Into<Listener>,
) -> Result<Running, ServeError> {
    config.validate()?;
    let (grpc, http) = (grpc.into(), http.into());
    let grpc_addr = grpc.local_addr().map_err(ServeError::Addr)?;
    let http_addr = http.local_addr().map_err(ServeError::Addr)?;
    let grpc_tls = grpc.tls_config().is_some();
    let http_tls = http.tls_config().is_some();
    let tls = TlsReloader(
        grpc.tls_config()
            .into_iter()
            .chain(http.tls_config())
            .cloned()
            .collect(),
    );
    let config = Arc::new(config);
    let limits = config.limits.clone();
    let table = Arc::new(NodeTable::with_max_nodes(
        config.scoring.admission,
        limits.max_nodes,
    ));
    let (shutdown, rx) = watch::channel(false);
    let metrics = crate::metrics::install();

    let mut service = ReportService::new(Arc::clone(&table), Arc::clone(&config), rx.clone());
    if grpc_tls {
        service = service.requiring_peer_identity();
    }
    let grpc_conns = listen::accept(
        grpc,
        "grpc",
        limits.header_read_timeout,
        Preface::Http2,
        rx.clone(),
    );
    let incoming = ReceiverStream::new(grpc_conns).map(Ok::<_, std::io::Error>);
    let mut grpc_rx = rx.clone();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(
                NodeReportsServer::new(service).max_decoding_message_size(limits.max_report_bytes),
            )
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_rx.wait_for(|s| *s).await;
            }),
    );

    let app = router(HttpState::new(
        Arc::clone(&table),
        Arc::clone(&config),
        metrics,
    ));
    let http_conns = listen::accept(
        http,
        "http",
        limits.header_read_timeout,
        Preface::None,
        rx.clone(),
    );
    let http = tokio::spawn(crate::http_server::serve(
        http_conns,
        app,
        limits.header_read_timeout,
        rx.clone(),
    ));
    tokio::spawn(forget_silent_nodes(
        Arc::clone(&table),
        limits.forget_after,
        rx,
    ));
    tracing::info!(
        %grpc_addr,
        %http_addr,
        grpc_tls,
        http_tls,
        max_nodes = limits.max_nodes,
        "colo-scheduler serving"
    );
    Ok(Running {
        grpc_addr,
        http_addr,
        table,
        tls,
        shutdown,
        grpc,
        http,
    })
}

/// Every quarter of `after` (between 100 ms and a minute), drops the nodes that reported
/// nothing for `after`; ends with the server.
async fn forget_silent_nodes(
    table: Arc<NodeTable>,
    after: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = (after / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let n = table.forget_older_than(Instant::now(), after);
        if n > 0 {
            metrics::counter!(m::NODES_FORGOTTEN).increment(n as u64);
            tracing::info!("forgot {n} nodes that reported nothing for {after:?}");
        }
    }
}

impl Running {
    /// A handle that re-reads the listeners' TLS files (for SIGHUP).
    #[must_use]
    pub fn tls_reloader(&self) -> TlsReloader {
        self.tls.clone()
    }

    /// Stops accepting, ends every report stream (agents reconnect elsewhere or later), lets
    /// in-flight extender calls finish, and waits up to [`SHUTDOWN_GRACE`] for connections to
    /// close.
    ///
    /// # Errors
    /// [`ServeError`] when a server failed or its connections outlived the grace period.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        let (grpc_abort, http_abort) = (self.grpc.abort_handle(), self.http.abort_handle());
        let both = async {
            let (g, h) = tokio::join!(self.grpc, self.http);
            g??;
            h?.map_err(ServeError::Http)?;
            Ok::<(), ServeError>(())
        };
        if let Ok(r) = tokio::time::timeout(SHUTDOWN_GRACE, both).await {
            r
        } else {
            grpc_abort.abort();
            http_abort.abort();
            Err(ServeError::GraceExpired)
        }
    }

    /// Serves until `signal` completes, then shuts down gracefully; returns early if a server
    /// fails on its own.
    ///
    /// # Errors
    /// [`ServeError`] when a server failed.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
        let failed = tokio::select! {
            () = signal => None,
            r = &mut self.grpc => Some(match r {
                Ok(Ok(())) => ServeError::Ended("gRPC"),
                Ok(Err(e)) => e.into(),
                Err(e) => e.into(),
            }),
            r = &mut self.http => Some(match r {
                Ok(Ok(())) => ServeError::Ended("HTTP"),
                Ok(Err(e)) => ServeError::Http(e),
                Err(e) => e.into(),
            }),
        };
        if let Some(e) = failed {
            let _ = self.shutdown.send(true);
            self.grpc.abort();
            self.http.abort();
            return Err(e);
        }
        self.shutdown().await
    }
}
