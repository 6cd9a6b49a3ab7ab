//! Who is calling, what they may do, and the audit trail.
//!
//! * Unix socket: the peer's uid (from `SO_PEERCRED`). The socket's mode (0600, or 0660 with
//!   `api.socket_group`) already decides who can connect; a connected peer has full access.
//! * TCP: mutual TLS. The identity is the client certificate's subject common name (its first
//!   DNS name when it has no common name); identities in `api.tcp.full_access` may change
//!   things, every other certified client may only read. With the explicit opt-in
//!   `api.tcp.insecure_any_client` a client without a certificate has full access.
//!
//! Every change (submit, cancel, SLI report, policy reload) and every refusal is written as one
//! structured log line with the target `colo::audit`: operation, caller, outcome, job, reason.

use std::fmt;
use std::sync::Arc;

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

pub use colo_config::job::{ECHO_LIMIT, truncate};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read jobs, logs and node status.
    ReadOnly,
    /// Also submit, cancel, report SLIs and reload the policy.
    Full,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// How it identified itself (`uid:0`, `cert:launcher-1`, `tcp:10.0.0.5:4711`).
    pub identity: String,
    /// What it may do.
    pub access: Access,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.identity)
    }
}

/// The TCP listener's authorization rules (the Unix socket needs none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpAccess {
    /// Certificate identities with full access.
    pub full_access: Vec<String>,
    /// Clients without certificates are accepted, with full access.
    pub insecure_any_client: bool,
}

/// Identifies the caller of `req` and decides its access.
pub fn caller<T>(req: &Request<T>, tcp: &Arc<TcpAccess>) -> Caller {
    if let Some(certs) = req.peer_certs()
        && let Some(first) = certs.first()
    {
        let name = certificate_identity(first.as_ref());
        let access = match &name {
            Some(n) if tcp.full_access.iter().any(|f| f == n) => Access::Full,
            _ => Access::ReadOnly,
        };
        return Caller {
            identity: format!(
                "cert:{}",
                truncate(name.as_deref().unwrap_or("(no subject name)"))
            ),
            access,
        };
    }
    if let Some(addr) = req.remote_addr() {
        // TCP without a certificate: only reachable with the insecure opt-in.
        return Caller {
            identity: format!("tcp:{addr} (no certificate)"),
            access: if tcp.insecure_any_client {
                Access::Full
            } else {
                Access::ReadOnly
            },
        };
    }
    let uid = req
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred)
        .map(|c| c.uid());
    Caller {
        identity: uid.map_or_else(|| "unix:unknown".into(), |u| format!("uid:{u}")),
        access: Access::Full,
    }
}

/// The subject common name of a DER certificate, else its first DNS subject alternative name.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
    {
        return Some(cn.to_string());
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
        _ => None,
    })
}

/// Refuses `op` unless `who` has full access (and audits the refusal).
pub fn require_full(who: &Caller, op: &str) -> Result<(), Status> {
    if who.access == Access::Full {
        return Ok(());
    }
    let reason = format!(
        "{op} needs full access; {who} may only read (list it in api.tcp.full_access to allow it)"
    );
    refused(who, op, None, &reason);
    Err(Status::permission_denied(reason))
}

/// Audits a change that was made.
pub fn done(who: &Caller, op: &str, job: Option<&str>) {
    tracing::info!(target: "colo::audit", op, caller = %who, job = job.unwrap_or("-"), outcome = "ok", "audit");
}

/// Audits a refusal.
pub fn refused(who: &Caller, op: &str, job: Option<&str>, reason: &str) {
    tracing::warn!(target: "colo::audit", op, caller = %who, job = job.map(truncate).unwrap_or_else(|| "-".into()),
        outcome = "refused", reason = %truncate(reason), "audit");
}

/// Audits the end of a call: `done` on success, `refused` with the status message otherwise.
pub fn outcome<R>(who: &Caller, op: &str, job: Option<&str>, r: &Result<R, Status>) {
    match r {
        Ok(_) => done(who, op, job),
        Err(s) => refused(who, op, job, s.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_callers_are_refused_changes() {
        let ro = Caller {
            identity: "cert:reader".into(),
            access: Access::ReadOnly,
        };
        let e = require_full(&ro, "submit").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("api.tcp.full_access"), "{e}");
        let full = Caller {
            identity: "uid:0".into(),
            access: Access::Full,
        };
        assert!(require_full(&full, "submit").is_ok());
    }
}
