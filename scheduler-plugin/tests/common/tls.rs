//! Certificates for the TLS tests and clients that present them: a gRPC report client and an
//! HTTPS connection, each with or without a client certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use colo_proto::report::node_reports_client::NodeReportsClient;
use colo_scheduler::http_client::HttpConnection;
use colo_testkit::{CertFiles, TestCa};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Two CAs and the certificates the tests use.
pub struct Pki {
    _dir: tempfile::TempDir,
    /// The CA both ports trust.
    pub ca: TestCa,
    /// A CA neither port trusts.
    pub other: TestCa,
    /// The scheduler's serving certificate (`localhost`, `127.0.0.1`).
    pub server: CertFiles,
    /// An agent's certificate: CN `node-7`.
    pub node7: CertFiles,
    /// An agent's certificate naming its node only in a DNS SAN: `node-9`.
    pub node9_san: CertFiles,
    /// kube-scheduler's client certificate.
    pub kube: CertFiles,
    /// A certificate for `node-7` from the untrusted CA.
    pub stranger: CertFiles,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "colo");
        let other = TestCa::new(dir.path(), "other");
        Self {
            server: ca.issue(
                "server",
                "colo-scheduler",
                &["DNS:localhost", "IP:127.0.0.1"],
            ),
            node7: ca.issue("node-7", "node-7", &[]),
            node9_san: ca.issue("node-9", "", &["DNS:node-9"]),
            kube: ca.issue("kube-scheduler", "kube-scheduler", &[]),
            stranger: other.issue("node-7", "node-7", &["DNS:node-7"]),
            ca,
            other,
            _dir: dir,
        }
    }

    /// The flags for mutual TLS on both ports, trusting `ca`.
    pub fn flags(&self) -> Vec<String> {
        let p = |p: &Path| p.to_str().unwrap().to_owned();
        vec![
            "--tls-cert".into(),
            p(&self.server.cert),
            "--tls-key".into(),
            p(&self.server.key),
            "--grpc-client-ca".into(),
            p(&self.ca.ca.cert),
            "--http-client-ca".into(),
            p(&self.ca.ca.cert),
        ]
    }
}

/// A report client over TLS to `addr`, verifying the server with `ca`, presenting `id` if any.
pub async fn grpc_client(
    addr: SocketAddr,
    ca: &Path,
    id: Option<&CertFiles>,
) -> Result<NodeReportsClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some(id) = id {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&id.cert).unwrap(),
            std::fs::read(&id.key).unwrap(),
        ));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(NodeReportsClient::new(channel))
}

/// An HTTPS connection to `addr`, verifying the server with `ca`, presenting `id` if any.
pub async fn https(
    addr: SocketAddr,
    ca: &Path,
    id: Option<&CertFiles>,
) -> std::io::Result<HttpConnection<TlsStream<TcpStream>>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match id {
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&id.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&id.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    Ok(HttpConnection::over(tls, addr))
}
