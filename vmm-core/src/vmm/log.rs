//! The VMM's own messages: stderr and, with `--log PATH`, a file.
//!
//! Writes never fail loudly: when the process that started the VMM dies, its stderr pipe may be
//! closed, and the VMM must go on running its guest.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Writes `colo-vmm: ...` lines to stderr and the log file.
#[derive(Debug)]
pub struct Logger {
    file: Option<File>,
}

impl Logger {
    /// Opens (creates, appends to) the log file, if any.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
            None => None,
        };
        Ok(Self { file })
    }

    /// A logger that writes to stderr only.
    pub fn stderr_only() -> Self {
        Self { file: None }
    }

    /// Writes one line, prefixed with `colo-vmm: `.
    pub fn line(&self, msg: &str) {
        let line = format!("colo-vmm: {msg}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(mut f) = self.file.as_ref() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
