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
        hint: None,
    };
    let unreachable = |e: tonic::transport::Error| {
        let (message, kind) = cause(&e);
        CliError::Connect {
            target: args.target(),
            message,
            hint: Some(hint(args, kind)),
        }
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
                .map_err(unreachable)?
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
                .map_err(unreachable)?
        }
    };
    Ok(AgentClient::new(channel).max_decoding_message_size(64 << 20))
}

/// The cause of a connection failure, said once: the chain of sources without the generic
/// "transport error" on top and without the repeats that wrapped I/O errors bring, and the kind
/// of the innermost I/O error (what the hint is chosen by).
fn cause(e: &(dyn std::error::Error + 'static)) -> (String, Option<std::io::ErrorKind>) {
    let mut parts: Vec<String> = Vec::new();
    let mut kind = None;
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            kind = Some(io.kind());
        }
        let text = err.to_string();
        // A wrapper often prints its source again ("x: y" then "y"): keep the words once.
        let said = parts.last().is_some_and(|p| p.contains(&text));
        if !said && !text.is_empty() {
            if let Some(last) = parts.last_mut()
                && text.contains(last.as_str())
            {
                *last = text;
            } else {
                parts.push(text);
            }
        }
        cur = err.source();
    }
    if parts.len() > 1 && parts[0] == "transport error" {
        parts.remove(0);
    }
    (parts.join(": "), kind)
}

/// What to check, for the way coloctl tried to reach the agent and how that failed.
fn hint(args: &ConnectArgs, kind: Option<std::io::ErrorKind>) -> String {
    use std::io::ErrorKind as K;
    let socket = args.socket.display();
    match (&args.endpoint, kind) {
        (None, Some(K::NotFound)) => format!(
            "is colo-agent running (`systemctl status colo-agent`)? Is --socket right? coloctl \
             looked for {socket} (--socket or COLO_AGENT_SOCKET; the agent listens on api.socket \
             of its agent.yaml)"
        ),
        (None, Some(K::ConnectionRefused)) => format!(
            "{socket} exists but no colo-agent listens on it: is colo-agent running \
             (`systemctl status colo-agent`)? Is --socket right?"
        ),
        (None, Some(K::PermissionDenied)) => format!(
            "{socket} is open to root and to api.socket_group only: run coloctl as root or as a \
             member of that group"
        ),
        (None, _) => format!(
            "is colo-agent running (`systemctl status colo-agent`)? Is --socket right (now \
             {socket})?"
        ),
        (Some(_), Some(K::ConnectionRefused | K::TimedOut | K::AddrNotAvailable)) => {
            "is colo-agent running with api.tcp listening at that address? Is --endpoint right \
             (https://HOST:PORT)?"
                .to_owned()
        }
        (Some(_), _) => "is --endpoint right (https://HOST:PORT)? For a TLS failure check \
                         --tls-ca (the CA that signed the agent's certificate), --tls-name (the \
                         name in that certificate) and --tls-cert/--tls-key (a client certificate \
                         signed by the agent's api.tcp.client_ca)"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(String, Option<Box<dyn std::error::Error + Send + Sync>>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn the_cause_is_said_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io().to_string();
        // tonic's shape: "transport error" over a wrapper that prints its I/O source.
        let e = Wrap(
            "transport error".into(),
            Some(Box::new(Wrap(text.clone(), Some(Box::new(io()))))),
        );
        let (message, kind) = cause(&e);
        assert_eq!(message, text);
        assert_eq!(kind, Some(std::io::ErrorKind::NotFound));
        let e = Wrap(
            "handshake failed".into(),
            Some(Box::new(Wrap("bad certificate".into(), None))),
        );
        assert_eq!(cause(&e).0, "handshake failed: bad certificate");
    }
}
