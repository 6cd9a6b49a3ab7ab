//! Running colo-scheduler: the gRPC ingest and the HTTP extender on their listeners, with
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use colo_proto::report::node_reports_server::NodeReportsServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SchedulerConfig;
use crate::ingest::ReportService;
use crate::k8s::{HttpState, router};
use crate::table::NodeTable;

/// How long shutdown waits for connections to close before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A server that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<std::io::Result<()>>,
}

/// Starts serving on the given listeners.
///
/// # Errors
/// [`ServeError::Addr`] when a listener's address cannot be read.
pub fn start(
    config: SchedulerConfig,
    grpc: TcpListener,
    http: TcpListener,
) -> Result<Running, ServeError> {
    let grpc_addr = grpc.local_addr().map_err(ServeError::Addr)?;
    let http_addr = http.local_addr().map_err(ServeError::Addr)?;
    let config = Arc::new(config);
    let table = Arc::new(NodeTable::new(config.scoring.admission));
    let (shutdown, rx) = watch::channel(false);
    let metrics = crate::metrics::install();

    let service = ReportService::new(Arc::clone(&table), Arc::clone(&config), rx.clone());
    let mut grpc_rx = rx.clone();
    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(NodeReportsServer::new(service))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_rx.wait_for(|s| *s).await;
            }),
    );

    let app = router(HttpState {
        table: Arc::clone(&table),
        config,
        metrics,
    });
    let mut http_rx = rx;
    // TCP_NODELAY, as Go's HTTP server sets it: an answer's last segment (filter answers run to
    // 150 KiB for 5,000 nodes) must not wait on Nagle for the client's ACK of the ones before.
    let http = http.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on an extender connection: {e}");
        }
    });
    let http = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async move {
                let _ = http_rx.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(%grpc_addr, %http_addr, "colo-scheduler serving");
    Ok(Running {
        grpc_addr,
        http_addr,
        table,
        shutdown,
        grpc,
        http,
    })
}

impl Running {
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
