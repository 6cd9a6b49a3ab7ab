//! Connecting to the agent: its Unix socket (default), or TCP with TLS.

use std::path::PathBuf;
use std::time::Duration;

use colo_proto::agent::agent_client::AgentClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::CliError;

/// How to reach the agent (global flags of coloctl).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The agent's Unix socket.
    #[arg(
        long,
        global = true,
        env = "COLO_AGENT_SOCKET",
        default_value = "/run/colo/agent.sock"
    )]
    pub socket: PathBuf,
    /// Reach the agent over TCP+TLS instead: `https://host:port`.
    #[arg(long, global = true, env = "COLO_AGENT_ENDPOINT")]
    pub endpoint: Option<String>,
    /// CA certificate (PEM) that signed the agent's TLS certificate.
    #[arg(long = "tls-ca", global = true, env = "COLO_AGENT_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), when the agent asks for one.
    #[arg(
        long = "tls-cert",
        global = true,
        env = "COLO_AGENT_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(
        long = "tls-key",
        global = true,
        env = "COLO_AGENT_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// TLS server name to verify, when it differs from the endpoint's host.
    #[arg(long = "tls-name", global = true)]
    pub tls_name: Option<String>,
}

impl ConnectArgs {
    /// Where coloctl connects, for messages.
    pub fn target(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| self.socket.display().to_string())
    }
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::Local(format!("cannot read the {what} {}: {e}", path.display())))
}

/// Connects to the agent.
pub async fn connect(args: &ConnectArgs) -> Result<AgentClient<Channel>, CliError> {
    let fail = |message: String| CliError::Connect {
        target: args.target(),
        message,
    };
    let channel = match &args.endpoint {
        Some(url) => {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &args.tls_ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
            }
            if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
                tls = tls.identity(Identity::from_pem(
                    read(c, "client certificate")?,
                    read(k, "client key")?,
                ));
            }
            if let Some(name) = &args.tls_name {
                tls = tls.domain_name(name.clone());
            }
            Endpoint::from_shared(url.clone())
                .map_err(|e| fail(e.to_string()))?
                .connect_timeout(Duration::from_secs(5))
                .tls_config(tls)
                .map_err(|e| fail(e.to_string()))?
                .connect()
                .await
                .map_err(|e| fail(format!("{e}: {}", source_chain(&e))))?
        }
        None => {
            let path = args.socket.clone();
            // The URI is required by tonic but unused: the connector dials the socket.
            Endpoint::from_static("http://colo-agent.local")
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    }
                }))
                .await
                .map_err(|e| fail(format!("{e}: {}", source_chain(&e))))?
        }
    };
    Ok(AgentClient::new(channel).max_decoding_message_size(64 << 20))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}
