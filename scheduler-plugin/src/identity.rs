//! Who a client is, from the certificate it presented in the TLS handshake: the subject's common
//! names and the DNS names among its subject alternative names.
//!
//! The handshake has already verified the chain against the configured CA, so this only reads
//! the names out (once per connection, a few microseconds). A report is accepted on a mutual-TLS
//! port only for a node its connection's certificate names ([`PeerIdentity::names`]).

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A certificate whose names cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The certificate is not DER X.509.
    #[error("the client certificate cannot be parsed: {0}")]
    Parse(String),
}

/// The names a client certificate gives its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common names (CN), in order.
    pub common_names: Vec<String>,
    /// The DNS names of the subject alternative name extension, in order.
    pub dns_names: Vec<String>,
}

impl PeerIdentity {
    /// Reads the names of the end-entity certificate `der`.
    ///
    /// # Errors
    /// [`IdentityError::Parse`] when `der` is not an X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
        let common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .collect();
        let dns_names = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Parse(e.to_string()))?
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            common_names,
            dns_names,
        })
    }

    /// Whether the certificate names node `node`: a common name or a DNS name equal to it
    /// (ignoring ASCII case, as DNS does; node names are lower case).
    #[must_use]
    pub fn names(&self, node: &str) -> bool {
        self.common_names
            .iter()
            .chain(&self.dns_names)
            .any(|n| n.eq_ignore_ascii_case(node))
    }
}

impl std::fmt::Display for PeerIdentity {
    /// `CN "node-7", DNS "node-7", "node-7.example"`, or `no CN or DNS name`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |f: &mut std::fmt::Formatter<'_>, what: &str, names: &[String]| {
            write!(f, "{what} ")?;
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{n:?}")?;
            }
            Ok(())
        };
        match (self.common_names.is_empty(), self.dns_names.is_empty()) {
            (true, true) => write!(f, "no CN or DNS name"),
            (false, true) => list(f, "CN", &self.common_names),
            (true, false) => list(f, "DNS", &self.dns_names),
            (false, false) => {
                list(f, "CN", &self.common_names)?;
                write!(f, "; ")?;
                list(f, "DNS", &self.dns_names)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(cn: &[&str], dns: &[&str]) -> PeerIdentity {
        PeerIdentity {
            common_names: cn.iter().map(|s| (*s).to_owned()).collect(),
            dns_names: dns.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn a_common_name_or_a_dns_name_names_the_node() {
        assert!(id(&["node-7"], &[]).names("node-7"));
        assert!(id(&["agent"], &["x", "node-7"]).names("node-7"));
        assert!(id(&["NODE-7"], &[]).names("node-7"));
        assert!(!id(&["node-7"], &["node-7.example"]).names("node-2"));
        assert!(!id(&[], &[]).names("node-7"));
        assert!(!id(&["node-7"], &[]).names("node-7 "));
    }

    #[test]
    fn shown_as_operators_read_it() {
        assert_eq!(id(&[], &[]).to_string(), "no CN or DNS name");
        assert_eq!(
            id(&["node-7"], &["node-7", "n7.example"]).to_string(),
            r#"CN "node-7"; DNS "node-7", "n7.example""#
        );
        assert_eq!(id(&[], &["a"]).to_string(), r#"DNS "a""#);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(PeerIdentity::from_der(b"not a certificate").is_err());
    }
}
