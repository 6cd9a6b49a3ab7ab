//! Throwaway certificate authorities for TLS tests, made with the `openssl` command (Debian
//! package `openssl`): P-256 keys, valid for a day, written as PEM into a directory the test
//! owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A test CA in a directory.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
    /// The CA's own certificate and key (`<name>-ca.crt`, `<name>-ca.key`).
    pub ca: CertFiles,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// Makes a CA called `name` (its subject CN) in `dir`.
    ///
    /// # Panics
    /// When `openssl` is missing or fails.
    #[must_use]
    pub fn new(dir: &Path, name: &str) -> Self {
        let ca = CertFiles {
            cert: dir.join(format!("{name}-ca.crt")),
            key: dir.join(format!("{name}-ca.key")),
        };
        let subject = format!("/CN={name}");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                path(&ca.key),
                "-out",
                path(&ca.cert),
                "-days",
                "1",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca,
        }
    }

    /// Issues a certificate with subject CN `cn` (none when empty) and subject alternative
    /// names `sans` (`DNS:x`, `IP:1.2.3.4`), for both server and client use; files
    /// `<ca>-<file>.crt` and `.key`.
    ///
    /// # Panics
    /// When `openssl` fails.
    #[must_use]
    pub fn issue(&self, file: &str, cn: &str, sans: &[&str]) -> CertFiles {
        let base = format!("{}-{file}", self.name);
        let out = CertFiles {
            cert: self.dir.join(format!("{base}.crt")),
            key: self.dir.join(format!("{base}.key")),
        };
        let csr = self.dir.join(format!("{base}.csr"));
        let ext = self.dir.join(format!("{base}.ext"));
        let subject = if cn.is_empty() {
            "/O=colo test".to_owned()
        } else {
            format!("/CN={cn}")
        };
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                path(&out.key),
                "-out",
                path(&csr),
                "-subj",
                &subject,
            ],
        );
        let mut lines = vec![
            "basicConstraints=CA:FALSE".to_owned(),
            "keyUsage=critical,digitalSignature".to_owned(),
            "extendedKeyUsage=serverAuth,clientAuth".to_owned(),
        ];
        if !sans.is_empty() {
            lines.push(format!("subjectAltName={}", sans.join(",")));
        }
        std::fs::write(&ext, lines.join("\n") + "\n").expect("write the extensions file");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                path(&csr),
                "-CA",
                path(&self.ca.cert),
                "-CAkey",
                path(&self.ca.key),
                "-CAcreateserial",
                "-out",
                path(&out.cert),
                "-days",
                "1",
                "-extfile",
                path(&ext),
            ],
        );
        out
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}
