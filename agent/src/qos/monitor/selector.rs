//! How an online service's selector turns into cgroup paths, in the node's hierarchies
//! ([`Hierarchies`], detected once by the cgroup layer).

use std::path::{Path, PathBuf};

use colo_config::agent::Selector;

use crate::host::cgroup::Hierarchies;

/// The v1 controller that lists a process's cgroup for CPU purposes.
const CPU_CONTROLLER: &str = "cpuacct";

/// Errors resolving a service's selector.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The pid file is missing or holds no pid.
    #[error("pid file {path}: {why}; is the service running?")]
    PidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The process has no cgroup the agent can read.
    #[error("process {pid}: cannot read its cgroup ({why})")]
    ProcCgroup {
        /// The process.
        pid: u32,
        /// What is wrong.
        why: String,
    },
    /// The systemd unit's cgroup was not found.
    #[error("systemd unit {unit}: no cgroup found under {searched}; is the unit running?")]
    Unit {
        /// The unit.
        unit: String,
        /// Where it was looked for.
        searched: String,
    },
}

/// A process's cgroup path for CPU (`cpuacct` on v1, the unified path on v2) from
/// `/proc/<pid>/cgroup`.
pub fn proc_cgroup(h: &Hierarchies, pid: u32) -> Result<PathBuf, ResolveError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| {
        ResolveError::ProcCgroup {
            pid,
            why: e.to_string(),
        }
    })?;
    let wanted = CPU_CONTROLLER;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let hit = if h.is_v2() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == wanted)
        };
        if hit {
            return Ok(PathBuf::from(path));
        }
    }
    Err(ResolveError::ProcCgroup {
        pid,
        why: format!(
            "no {} line in /proc/{pid}/cgroup",
            if h.is_v2() { "0::" } else { wanted }
        ),
    })
}

/// The cgroup paths (relative to the hierarchy roots) a selector names now. Pid files and units
/// are resolved through a process of the service, so a restart is followed at the next refresh.
pub fn resolve(h: &Hierarchies, selector: &Selector) -> Result<Vec<PathBuf>, ResolveError> {
    match selector {
        Selector::Cgroups(paths) => Ok(paths.iter().map(PathBuf::from).collect()),
        Selector::PidFile(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ResolveError::PidFile {
                path: path.clone(),
                why: e.to_string(),
            })?;
            let pid: u32 = text.trim().parse().map_err(|_| ResolveError::PidFile {
                path: path.clone(),
                why: format!("{:?} is not a pid", text.trim()),
            })?;
            Ok(vec![proc_cgroup(h, pid)?])
        }
        Selector::SystemdUnit(unit) => {
            // systemd keeps every unit's cgroup in its own hierarchy (v1 name=systemd, or v2);
            // the unit's first process tells the path in the cpuacct hierarchy on v1.
            let base = match h {
                Hierarchies::V2 { mount } => mount.clone(),
                Hierarchies::V1 { .. } => h
                    .mount("name=systemd")
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup/systemd")),
            };
            let dir = find_unit(&base, unit, 0).ok_or_else(|| ResolveError::Unit {
                unit: unit.clone(),
                searched: base.display().to_string(),
            })?;
            if h.is_v2() {
                return Ok(vec![
                    PathBuf::from("/").join(dir.strip_prefix(&base).unwrap_or(&dir)),
                ]);
            }
            let pid = std::fs::read_to_string(dir.join("cgroup.procs"))
                .ok()
                .and_then(|t| {
                    t.split_whitespace()
                        .next()
                        .and_then(|p| p.parse::<u32>().ok())
                })
                .ok_or_else(|| ResolveError::Unit {
                    unit: unit.clone(),
                    searched: dir.display().to_string(),
                })?;
            Ok(vec![proc_cgroup(h, pid)?])
        }
    }
}

/// Looks for a directory named `unit` below `dir` (slices nest a few levels deep).
fn find_unit(dir: &Path, unit: &str, depth: u32) -> Option<PathBuf> {
    let direct = dir.join(unit);
    if direct.is_dir() {
        return Some(direct);
    }
    if depth >= 4 {
        return None;
    }
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".slice")
            && let Some(found) = find_unit(&e.path(), unit, depth + 1)
        {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_resolves_its_own_process() {
        let h = Hierarchies::detect(
            colo_config::agent::CgroupVersion::Auto,
            Path::new("/sys/fs/cgroup"),
        )
        .unwrap();
        let me = proc_cgroup(&h, std::process::id()).unwrap();
        assert!(me.is_absolute(), "{me:?}");
        let d = tempfile::tempdir().unwrap();
        let pf = d.path().join("x.pid");
        std::fs::write(&pf, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(
            resolve(&h, &Selector::PidFile(pf.clone())).unwrap(),
            vec![me]
        );
        std::fs::write(&pf, "nope").unwrap();
        let e = resolve(&h, &Selector::PidFile(pf)).unwrap_err();
        assert!(e.to_string().contains("is not a pid"), "{e}");
        let e = resolve(&h, &Selector::SystemdUnit("colo-no-such.service".into())).unwrap_err();
        assert!(e.to_string().contains("colo-no-such.service"), "{e}");
    }
}
