//! TLS for colo-scheduler's listeners: the server's certificate and key, and the CA bundle that
//! every client certificate must chain to (a client without one is refused in the handshake).
//!
//! The material is read from PEM files at start and again on [`ServerTls::reload`] (SIGHUP), so
//! certificates rotate without a restart: new handshakes use the new files, open connections
//! keep the session they have. A reload that fails keeps the previous material.
//!
//! rustls through tokio-rustls, on the ring provider: the same TLS stack tonic uses for the
//! agent's TCP listener, without pulling in a second crypto library.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no PEM item of the kind wanted.
    #[error("cannot read the {what} from {path} (set by {flag}): {message}")]
    Read {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The flag that names it.
        flag: &'static str,
        /// Why not.
        message: String,
    },
    /// The files are readable but do not make a TLS configuration.
    #[error("TLS with {cert}, {key} and client CA {ca}: {message}")]
    Config {
        /// The server certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The client CA file.
        ca: PathBuf,
        /// What rustls says.
        message: String,
    },
}

/// Where one listener's TLS material lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CAs (PEM) that client certificates must chain to.
    pub client_ca: PathBuf,
}

/// Which listener a TLS configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Report ingest: gRPC over HTTP/2.
    Grpc,
    /// The extender and the operator endpoints: HTTP/1.1.
    Http,
}

impl Port {
    /// The ALPN protocol served: kube-scheduler's Go client offers `h2` and `http/1.1` and gets
    /// HTTP/1.1, the only protocol the extender port speaks.
    fn alpn(self) -> &'static [u8] {
        match self {
            Self::Grpc => b"h2",
            Self::Http => b"http/1.1",
        }
    }

    /// The flag that sets this port's client CA.
    #[must_use]
    pub fn client_ca_flag(self) -> &'static str {
        match self {
            Self::Grpc => "--grpc-client-ca",
            Self::Http => "--http-client-ca",
        }
    }
}

/// One listener's TLS configuration, reloadable.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    port: Port,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads `files` for the listener `port`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and the flag when the material is unreadable or unusable.
    pub fn load(files: TlsFiles, port: Port) -> Result<Self, TlsError> {
        let config = build(&files, port)?;
        Ok(Self {
            files,
            port,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; new handshakes use what they hold from now on.
    ///
    /// # Errors
    /// [`TlsError`] when they are unusable; the material in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(build(&self.files, self.port)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The files this configuration comes from.
    #[must_use]
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor with the material in use now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

fn read_certs(
    path: &Path,
    what: &'static str,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Read {
        what,
        path: path.to_owned(),
        flag,
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "no CERTIFICATE block in it: write the certificates as PEM".into(),
        ));
    }
    Ok(certs)
}

fn build(files: &TlsFiles, port: Port) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs(&files.cert, "server certificate", "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Read {
        what: "private key",
        path: files.key.clone(),
        flag: "--tls-key",
        message: e.to_string(),
    })?;
    let config_err = |message: String| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        ca: files.client_ca.clone(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.client_ca, "client CA", port.client_ca_flag())? {
        roots
            .add(ca)
            .map_err(|e| config_err(format!("a client CA certificate is unusable: {e}")))?;
    }
    // Client certificates are required: the verifier refuses a handshake without one.
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| config_err(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| config_err(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![port.alpn().to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named_with_their_flag() {
        let dir = std::env::temp_dir().join("colo-scheduler-no-such-dir");
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: dir.join("ca.crt"),
        };
        let e = ServerTls::load(files, Port::Grpc).unwrap_err().to_string();
        assert!(e.contains("tls.crt") && e.contains("--tls-cert"), "{e}");
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        std::fs::write(&cert, "not pem\n").unwrap();
        let e = read_certs(&cert, "server certificate", "--tls-cert")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no CERTIFICATE block"), "{e}");
    }
}
