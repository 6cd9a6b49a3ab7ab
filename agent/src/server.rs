//! The listeners: gRPC on a Unix socket (always) and on TCP with TLS (optional), and the HTTP
//! listener for `/metrics` and `/healthz`.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use colo_proto::agent::agent_server::AgentServer;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::api::AgentService;
use crate::settings::TcpSettings;

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

/// Reads the TLS material and binds the TCP listener.
pub async fn bind_tcp(
    tcp: &TcpSettings,
) -> Result<(tokio::net::TcpListener, tonic::transport::ServerTlsConfig), ServerError> {
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
        .identity(tonic::transport::Identity::from_pem(cert, key));
    if let Some(ca) = &tcp.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(
            ca,
            "client CA",
        )?));
    }
    let listener = tokio::net::TcpListener::bind(tcp.listen)
        .await
        .map_err(|source| ServerError::Listen {
            what: tcp.listen.to_string(),
            source,
        })?;
    Ok((listener, tls))
}

/// Serves the API on TCP with TLS until `shutdown` resolves.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    tls: tonic::transport::ServerTlsConfig,
    service: AgentService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .add_service(AgentServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
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
