//! The listeners: gRPC on a Unix socket (always) and on TCP with TLS (optional), and the HTTP
//! listener for `/metrics` and `/healthz`.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use colo_proto::agent::agent_server::AgentServer;
use tokio_stream::wrappers::UnixListenerStream;

use crate::serve::api::AgentService;

/// The TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSettings {
    /// Address and port.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA for client certificates (None only with `insecure_any_client`).
    pub client_ca: Option<PathBuf>,
    /// Clients without certificates accepted, with full access (an explicit opt-in).
    pub insecure_any_client: bool,
    /// Certificate identities with full access; others may only read.
    pub full_access: Vec<String>,
}

/// Errors setting up a listener.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be bound or prepared.
    #[error("cannot listen on {what}: {source}")]
    Listen {
        /// The socket.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The socket group does not exist.
    #[error("api.socket_group {0:?} is not a group on this host; create it or change agent.yaml")]
    NoSuchGroup(String),
    /// TLS material could not be read or used.
    #[error("TLS for {listen}: {message}")]
    Tls {
        /// The TCP address.
        listen: String,
        /// What failed.
        message: String,
    },
}

/// Binds the API's Unix socket: removes a stale socket file, creates the directory, and sets
/// mode 0660 with `group` (or 0600 without).
pub fn bind_unix(
    path: &Path,
    group: Option<&str>,
) -> Result<tokio::net::UnixListener, ServerError> {
    let err = |source| ServerError::Listen {
        what: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            // The agent lock (state dir) guarantees no other agent serves it.
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    let mode = if let Some(g) = group {
        let gid = nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .ok_or_else(|| ServerError::NoSuchGroup(g.to_string()))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| err(e.into()))?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(listener)
}

/// Serves the API on a bound Unix socket until `shutdown` resolves.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    service: AgentService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(AgentServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}

/// How long a TLS handshake may take before the connection is dropped (half-open clients).
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the TLS material of the TCP listener (again on SIGHUP: certificates rotate).
pub fn tls_config(tcp: &TcpSettings) -> Result<tonic::transport::ServerTlsConfig, ServerError> {
    let tls_err = |message: String| ServerError::Tls {
        listen: tcp.listen.to_string(),
        message,
    };
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p)
            .map_err(|e| tls_err(format!("cannot read the {what} {}: {e}", p.display())))
    };
    let cert = read(&tcp.cert, "certificate")?;
    let key = read(&tcp.key, "private key")?;
    let mut tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    match (&tcp.client_ca, tcp.insecure_any_client) {
        (Some(ca), _) => {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(
                ca,
                "client CA",
            )?));
        }
        (None, true) => {}
        (None, false) => {
            return Err(tls_err(
                "api.tcp.client_ca is not set: set it (mutual TLS) or opt in with \
                 `api.tcp.insecure_any_client: true`"
                    .into(),
            ));
        }
    }
    Ok(tls)
}

/// Reads the TLS material and binds the TCP listener.
pub async fn bind_tcp(
    tcp: &TcpSettings,
) -> Result<
    (
        Arc<tokio::net::TcpListener>,
        tonic::transport::ServerTlsConfig,
    ),
    ServerError,
> {
    let tls = tls_config(tcp)?;
    let listener = tokio::net::TcpListener::bind(tcp.listen)
        .await
        .map_err(|source| ServerError::Listen {
            what: tcp.listen.to_string(),
            source,
        })?;
    Ok((Arc::new(listener), tls))
}

/// An accepted connection on its way to the current server generation.
type Accepted = std::io::Result<tokio::net::TcpStream>;

/// The TCP API: TLS (mutual unless opted out) on one listener, its certificates reloadable.
///
/// One task accepts and hands each connection to the current server generation over a
/// channel. A certificate reload starts a new generation and points the acceptor at it; the old
/// one sees its channel end and drains its connections. (Two servers polling one listener would
/// not do: tokio keeps only the last poller's waker, so the new one could sleep forever.)
#[derive(Debug)]
pub struct TcpServer {
    service: AgentService,
    stopped: tokio::sync::watch::Receiver<bool>,
    current: Arc<std::sync::Mutex<tokio::sync::mpsc::Sender<Accepted>>>,
    tasks: tokio::task::JoinSet<()>,
}

impl TcpServer {
    /// Serves `service` on `listener` with `tls` until `stopped` turns true.
    pub fn start(
        listener: Arc<tokio::net::TcpListener>,
        tls: tonic::transport::ServerTlsConfig,
        service: AgentService,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let current = Arc::new(std::sync::Mutex::new(tx));
        let mut s = Self {
            service,
            stopped: stopped.clone(),
            current: current.clone(),
            tasks: tokio::task::JoinSet::new(),
        };
        s.serve(tls, rx);
        let mut stop = stopped;
        s.tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    _ = stop.wait_for(|s| *s) => break,
                };
                match accepted {
                    Ok((conn, _)) => {
                        let tx = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        // A generation that has just been replaced drops the connection; the
                        // client reconnects to the new one.
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(e) => {
                        // EMFILE and the like: wait a little rather than spin.
                        tracing::warn!(error = %e, "api.tcp: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        s
    }

    fn serve(
        &mut self,
        tls: tonic::transport::ServerTlsConfig,
        rx: tokio::sync::mpsc::Receiver<Accepted>,
    ) {
        let mut stopped = self.stopped.clone();
        let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
        let service = self.service.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        self.tasks.spawn(async move {
            let served = match tonic::transport::Server::builder().tls_config(tls) {
                Ok(mut b) => {
                    b.add_service(AgentServer::new(service))
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "the TCP API stopped");
            }
        });
    }

    /// Re-reads the certificates and key (SIGHUP): new connections use them, open ones finish
    /// on the old. On an error the old material stays in force.
    pub fn reload(&mut self, tcp: &TcpSettings) -> Result<(), ServerError> {
        let tls = tls_config(tcp)?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        self.serve(tls, rx);
        // The old generation's sender goes here: its stream ends and it drains.
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = tx;
        while self.tasks.try_join_next().is_some() {}
        Ok(())
    }

    /// Waits until every generation has stopped (after `stopped` turned true).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Serves `router` (metrics, health, and whatever other components add) until `shutdown`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
