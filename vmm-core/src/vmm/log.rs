//! The VMM's own messages: stderr and, with `--log PATH`, a file; both bounded by
//! `--log-limit` (the file rotates, stderr stops taking lines past the limit).
//!
//! Writes never fail loudly: when the process that started the VMM dies, its stderr pipe may be
//! closed, and the VMM must go on running its guest.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use super::capped_output::{CappedFile, DroppedCounters, StreamBudget};

/// Writes `colo-vmm: ...` lines to stderr and the log file.
#[derive(Debug)]
pub struct Logger {
    file: Option<Mutex<CappedFile>>,
    stderr: StreamBudget,
}

impl Logger {
    /// Opens (creates, appends to) the log file, if any; `limit` bounds the file and what
    /// stderr receives.
    pub fn open(path: Option<&Path>, limit: Option<u64>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(CappedFile::open(p, limit)?)),
            None => None,
        };
        Ok(Self {
            file,
            stderr: StreamBudget::new(limit),
        })
    }

    /// A logger that writes to stderr only.
    pub fn stderr_only() -> Self {
        Self {
            file: None,
            stderr: StreamBudget::new(None),
        }
    }

    /// Writes one line, prefixed with `colo-vmm: `.
    pub fn line(&self, msg: &str) {
        let line = format!("colo-vmm: {msg}\n");
        if self.stderr.admit(line.len()) {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some(f) = &self.file {
            let _ = f
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(line.as_bytes());
        }
    }

    /// Counters of what the log file (oldest first) and stderr (newest first) dropped to stay
    /// within the limit, with a fresh serial counter.
    pub fn dropped_counters(&self) -> DroppedCounters {
        DroppedCounters {
            log: self.file.as_ref().map_or_else(Default::default, |f| {
                f.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .dropped_counter()
            }),
            stderr: self.stderr.dropped_counter(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chatty_vmm_stays_within_its_log_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmm.log");
        let log = Logger::open(Some(&path), Some(4096)).unwrap();
        for i in 0..1000 {
            log.line(&format!("message {i}"));
        }
        let kept = std::fs::metadata(&path).unwrap().len()
            + std::fs::metadata(dir.path().join("vmm.log.1"))
                .unwrap()
                .len();
        assert!(kept <= 4096, "{kept}");
        let dropped = log.dropped_counters().snapshot();
        assert!(dropped.log > 0);
        // stderr took lines up to the limit and no more.
        assert!(dropped.stderr > 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("colo-vmm: message 999\n"), "{text}");
    }
}
