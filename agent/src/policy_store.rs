//! The policy in force, and its reload (SIGHUP or the ReloadPolicy RPC): a new policy that
//! does not load or validate is refused, the error logged, and the old one kept.
//!
//! TEMPORARY: until colo-config's `load_policy` is on main, a policy is accepted when every
//! file is YAML with `apiVersion: colo/v1` and `kind: Policy` and an optional
//! `mode: enforce|observe`; then the loader becomes `colo_config::load_policy`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

/// A loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedPolicy {
    /// `enforce` or `observe`.
    pub mode: String,
    /// FNV-1a of the sources, hex: changes whenever any file changes.
    pub hash: String,
    /// The files it came from.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Header {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    #[serde(default)]
    mode: Option<String>,
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The policy files named by `paths`: files as given, directories' `*.yaml` in lexical order;
/// missing paths are skipped.
fn policy_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.exists() {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Loads and validates the policy from `paths` (no files: the built-in default policy).
pub fn load(paths: &[PathBuf]) -> Result<LoadedPolicy, String> {
    let files = policy_files(paths)?;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut mode = "enforce".to_string();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        hash = fnv1a(text.as_bytes(), hash);
        let h: Header =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        if h.api_version != colo_config::POLICY_API_VERSION {
            return Err(format!(
                "{}: apiVersion: must be {}, got {:?}",
                f.display(),
                colo_config::POLICY_API_VERSION,
                h.api_version
            ));
        }
        if h.kind != "Policy" {
            return Err(format!(
                "{}: kind: must be Policy, got {:?}",
                f.display(),
                h.kind
            ));
        }
        if let Some(m) = h.mode {
            if m != "enforce" && m != "observe" {
                return Err(format!(
                    "{}: mode: must be enforce or observe, got {m:?}",
                    f.display()
                ));
            }
            mode = m;
        }
    }
    Ok(LoadedPolicy {
        mode,
        hash: format!("{hash:016x}"),
        files,
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
    pub fn open(paths: Vec<PathBuf>) -> Result<Self, String> {
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
        match load(&self.paths) {
            Ok(p) => {
                let p = Arc::new(p);
                let old = std::mem::replace(
                    &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
                    p.clone(),
                );
                tracing::info!(old = %old.hash, new = %p.hash, mode = %p.mode, "policy reloaded");
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
        std::fs::write(&f, "apiVersion: colo/v9\nkind: Policy\n").unwrap();
        let e = store.reload().unwrap_err();
        assert!(e.contains("apiVersion"), "{e}");
        assert_eq!(store.current(), first);
        std::fs::write(&f, "apiVersion: colo/v1\nkind: Policy\n").unwrap();
        let second = store.reload().unwrap();
        assert_ne!(second.hash, first.hash);
        assert_eq!(second.mode, "enforce");
        // No files at all: the built-in default.
        assert!(PolicyStore::open(vec![dir.path().join("none.yaml")]).is_ok());
    }
}
