//! Reading and writing cgroup files, confined to the agent's own subtree: every write is
//! checked against the subtree roots, so a bug can never write into a cgroup the agent does
//! not own (online services, kubelet's or systemd's cgroups).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of cgroup file operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupFileError {
    /// A write or mkdir aimed outside the agent's subtree was refused before reaching the
    /// kernel.
    #[error("refusing to touch {path}: it is outside the agent's cgroup subtree ({roots})")]
    OutsideSubtree {
        /// The refused path.
        path: PathBuf,
        /// The subtree roots, comma-separated.
        roots: String,
    },
    /// The kernel refused an operation.
    #[error("{op} {path}{value}: {source}")]
    Io {
        /// What was done (`write`, `read`, `mkdir`, `rmdir`).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// ` <- "value"` for writes, empty otherwise.
        value: String,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A directory could not be removed because processes are still inside.
    #[error("cannot remove {path}: still holds processes {pids:?}; stop them first")]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// The processes still inside.
        pids: Vec<u32>,
    },
}

impl CgroupFileError {
    /// The OS error behind this failure, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The set of directories the agent may write below.
#[derive(Debug, Clone)]
pub struct Scope {
    roots: Vec<PathBuf>,
}

impl Scope {
    /// A scope allowing writes at and below each of `roots`.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self { roots }
    }

    fn check(&self, path: &Path) -> Result<(), CgroupFileError> {
        // Paths are built by the agent from validated job ids (no `..`), so a prefix check on
        // the components is enough.
        let ok = path
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir))
            && self.roots.iter().any(|r| path.starts_with(r));
        if ok {
            Ok(())
        } else {
            Err(CgroupFileError::OutsideSubtree {
                path: path.into(),
                roots: self
                    .roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// Writes `value` to the cgroup file `path` in one `write(2)`, as the kernel expects.
    pub fn write(&self, path: &Path, value: &str) -> Result<(), CgroupFileError> {
        self.check(path)?;
        let io = |source| CgroupFileError::Io {
            op: "write",
            path: path.into(),
            value: format!(" <- {value:?}"),
            source,
        };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        f.write_all(value.as_bytes()).map_err(io)
    }

    /// Creates the cgroup directory `path` (its parent must exist); an existing one is fine.
    pub fn mkdir(&self, path: &Path) -> Result<(), CgroupFileError> {
        self.check(path)?;
        match fs::create_dir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(CgroupFileError::Io {
                op: "mkdir",
                path: path.into(),
                value: String::new(),
                source,
            }),
        }
    }

    /// Removes the cgroup directory `path` and its child directories, deepest first. Never
    /// kills anything: a cgroup that still holds processes is reported as [`Busy`] after
    /// retrying for `patience` (an exiting process leaves its cgroup a moment after it dies).
    ///
    /// [`Busy`]: CgroupFileError::Busy
    pub fn remove_tree(&self, path: &Path, patience: Duration) -> Result<(), CgroupFileError> {
        self.check(path)?;
        if !path.exists() {
            return Ok(());
        }
        let entries = fs::read_dir(path).map_err(|source| CgroupFileError::Io {
            op: "read_dir",
            path: path.into(),
            value: String::new(),
            source,
        })?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.remove_tree(&entry.path(), patience)?;
            }
        }
        let deadline = Instant::now() + patience;
        loop {
            match fs::remove_dir(path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(source) => {
                    // A v2 threaded cgroup refuses reads of cgroup.procs (EOPNOTSUPP): its
                    // threads are what keep it busy.
                    let pids = read_pids(&path.join("cgroup.procs"))
                        .ok()
                        .filter(|p| !p.is_empty())
                        .or_else(|| read_pids(&path.join("cgroup.threads")).ok())
                        .unwrap_or_default();
                    if !pids.is_empty() {
                        return Err(CgroupFileError::Busy {
                            path: path.into(),
                            pids,
                        });
                    }
                    return Err(CgroupFileError::Io {
                        op: "rmdir",
                        path: path.into(),
                        value: String::new(),
                        source,
                    });
                }
            }
        }
    }
}

/// Reads a cgroup file.
pub fn read(path: &Path) -> Result<String, CgroupFileError> {
    fs::read_to_string(path).map_err(|source| CgroupFileError::Io {
        op: "read",
        path: path.into(),
        value: String::new(),
        source,
    })
}

/// Reads a `cgroup.procs`, `tasks` or `cgroup.threads` file.
pub fn read_pids(path: &Path) -> Result<Vec<u32>, CgroupFileError> {
    Ok(read(path)?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Reads a file holding one unsigned number (`max` reads as None).
pub fn read_u64(path: &Path) -> Result<Option<u64>, CgroupFileError> {
    let text = read(path)?;
    let t = text.trim();
    if t == "max" || t == "-1" {
        return Ok(None);
    }
    t.parse().map(Some).map_err(|_| CgroupFileError::Io {
        op: "parse",
        path: path.into(),
        value: format!(" ({t:?})"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_outside_the_scope_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("colo");
        let scope = Scope::new(vec![inside.clone()]);
        scope.mkdir(&inside).unwrap();
        // Cgroup files exist before they are written; a plain directory needs them made.
        fs::write(inside.join("x"), "").unwrap();
        scope.write(&inside.join("x"), "1").unwrap();
        assert_eq!(read_u64(&inside.join("x")).unwrap(), Some(1));
        let err = scope.write(&dir.path().join("other"), "1").unwrap_err();
        assert!(
            matches!(err, CgroupFileError::OutsideSubtree { .. }),
            "{err}"
        );
        let err = scope.mkdir(&inside.join("../escape")).unwrap_err();
        assert!(
            matches!(err, CgroupFileError::OutsideSubtree { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("outside the agent's cgroup subtree")
        );
    }
}
