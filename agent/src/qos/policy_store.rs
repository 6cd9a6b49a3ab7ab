//! The policy in force, and its reload (SIGHUP or the ReloadPolicy RPC): a new policy that
//! does not load or validate is refused, the error logged, and the old one kept.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use colo_config::Policy;
use colo_config::policy::Mode;

/// A loaded, validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPolicy {
    /// The policy (defaults merged with every file, in order).
    pub policy: Policy,
    /// `enforce` or `observe`.
    pub mode: String,
    /// FNV-1a of the files' names and texts, hex: changes whenever any file changes.
    pub hash: String,
    /// The files it came from (none: the built-in default policy).
    pub files: Vec<String>,
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Loads and validates the policy from `paths` (files, and directories of `*.yaml`, merged in
/// order over the defaults). Paths that do not exist are skipped; none at all gives the
/// built-in default policy. Every error names `FILE:LINE:COL`.
pub fn load(paths: &[PathBuf]) -> Result<LoadedPolicy, colo_config::ConfigErrors> {
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    let sources = colo_config::policy_sources(&existing)?;
    let policy = colo_config::parse_policy(&sources)?;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for s in &sources {
        hash = fnv1a(s.name.as_bytes(), hash);
        hash = fnv1a(s.text.as_bytes(), hash);
    }
    Ok(LoadedPolicy {
        mode: match policy.mode {
            Mode::Enforce => "enforce".into(),
            Mode::Observe => "observe".into(),
        },
        policy,
        hash: format!("{hash:016x}"),
        files: sources.into_iter().map(|s| s.name).collect(),
    })
}

/// The policy in force, shared by the API, the QoS loop and the reporter.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    paths: Vec<PathBuf>,
    current: Arc<RwLock<Arc<LoadedPolicy>>>,
}

impl PolicyStore {
    /// Loads the policy; fails when it is invalid (the agent does not start on a bad policy).
    pub fn open(paths: Vec<PathBuf>) -> Result<Self, colo_config::ConfigErrors> {
        let p = load(&paths)?;
        Ok(Self {
            paths,
            current: Arc::new(RwLock::new(Arc::new(p))),
        })
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the policy. On success it replaces the current one; on failure the error is
    /// logged and returned, and the current policy stays.
    pub fn reload(&self) -> Result<Arc<LoadedPolicy>, String> {
        match load(&self.paths).map_err(|e| e.to_string()) {
            Ok(p) => {
                let p = Arc::new(p);
                let old = std::mem::replace(
                    &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
                    p.clone(),
                );
                tracing::info!(old = %old.hash, new = %p.hash, mode = %p.mode, files = ?p.files, "policy reloaded");
                Ok(p)
            }
            Err(e) => {
                tracing::error!(error = %e, kept = %self.current().hash, "policy reload refused; keeping the old policy");
                Err(e)
            }
        }
    }

    /// The configured policy paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_keeps_the_old_policy_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("policy.yaml");
        std::fs::write(&f, "apiVersion: colo/v1\nkind: Policy\nmode: observe\n").unwrap();
        let store = PolicyStore::open(vec![f.clone()]).unwrap();
        let first = store.current();
        assert_eq!(first.mode, "observe");
        std::fs::write(&f, "apiVersion: colo/v1\nkind: Policy\nmode: sometimes\n").unwrap();
        let e = store.reload().unwrap_err();
        assert!(e.contains("mode"), "{e}");
        assert!(e.contains("policy.yaml:3"), "{e}");
        assert_eq!(store.current(), first);
        std::fs::write(&f, "apiVersion: colo/v1\nkind: Policy\n").unwrap();
        let second = store.reload().unwrap();
        assert_ne!(second.hash, first.hash);
        assert_eq!(second.mode, "enforce");
        // No files at all: the built-in default.
        let d = PolicyStore::open(vec![dir.path().join("none.yaml")]).unwrap();
        assert!(d.current().files.is_empty());
    }

    #[test]
    fn a_fifo_as_the_policy_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("policy.yaml");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(PolicyStore::open(vec![f]).map(|_| ()));
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the agent's policy loading blocked on a FIFO")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&fifo.display().to_string()), "{e}");
        assert!(e.contains("must be a regular file"), "{e}");
    }
}
