//! The reporter's side of mutual TLS with colo-scheduler (`scheduler.tls` in `agent.yaml`): the
//! CA that the scheduler's certificate chains to, and this agent's certificate and key, whose CN
//! or DNS subject alternative name must be the node name.
//!
//! The files are read when the reporter starts (a mistake fails the start) and again at every
//! reconnect, so rotated certificates take effect on the next connection without a restart.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A TLS file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file cannot be read.
    #[error("cannot read the {what} {path} (scheduler.tls.{field}): {source}")]
    Read {
        /// What the file holds.
        what: &'static str,
        /// The `scheduler.tls` field that names it.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where the reporter's TLS material lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReporterTls {
    /// CA bundle (PEM) that colo-scheduler's certificate chains to.
    pub ca: PathBuf,
    /// This agent's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

fn read(path: &Path, what: &'static str, field: &'static str) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        what,
        field,
        path: path.to_owned(),
        source,
    })
}

impl ReporterTls {
    /// The files, read now, as tonic's client TLS configuration (the server's name is the
    /// endpoint's host).
    ///
    /// # Errors
    /// [`TlsFileError`] naming the file and its field.
    pub fn client_config(&self) -> Result<ClientTlsConfig, TlsFileError> {
        let ca = read(&self.ca, "scheduler CA", "ca")?;
        let cert = read(&self.cert, "agent certificate", "cert")?;
        let key = read(&self.key, "agent key", "key")?;
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_with_its_field() {
        let tls = ReporterTls {
            ca: "/nonexistent/ca.crt".into(),
            cert: "/nonexistent/agent.crt".into(),
            key: "/nonexistent/agent.key".into(),
        };
        let e = tls.client_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.crt (scheduler.tls.ca)"), "{e}");
    }
}
