//! Where cgroups are: the unified mount (v2) or each v1 controller's mount, and how an online
//! service's selector turns into cgroup paths.

use std::path::{Path, PathBuf};

use colo_config::agent::Selector;

/// The cgroup hierarchies of the node, as the monitors need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchies {
    /// v1: each mount and the controllers it carries (a named hierarchy such as
    /// `name=systemd` is listed under that name).
    V1(Vec<(PathBuf, Vec<String>)>),
    /// v2: the unified mount.
    V2(PathBuf),
}

impl Hierarchies {
    /// Whether the node runs cgroup v2.
    pub fn is_v2(&self) -> bool {
        matches!(self, Self::V2(_))
    }

    /// The mount carrying `controller` (v2: the unified mount).
    pub fn mount(&self, controller: &str) -> Option<&Path> {
        match self {
            Self::V2(m) => Some(m),
            Self::V1(h) => h
                .iter()
                .find(|(_, c)| c.iter().any(|x| x == controller))
                .map(|(m, _)| m.as_path()),
        }
    }

    /// The directory of the cgroup `rel` (relative to the hierarchy root) for `controller`.
    pub fn dir(&self, controller: &str, rel: &Path) -> Option<PathBuf> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.mount(controller).map(|m| m.join(rel))
    }

    /// The file listing a cgroup's threads: v1 `tasks`, v2 `cgroup.threads`.
    pub fn thread_list(&self) -> &'static str {
        if self.is_v2() {
            "cgroup.threads"
        } else {
            "tasks"
        }
    }

    /// The v1 controller that lists a process's cgroup for CPU purposes (`cpuacct`), or the
    /// unified hierarchy.
    fn cpu_controller(&self) -> &'static str {
        "cpuacct"
    }

    /// Reads `/proc/self/mountinfo` (or `path`) for cgroup and cgroup2 mounts; v2 when a
    /// cgroup2 mount at `unified` carries controllers and no v1 hierarchy carries `cpu`.
    pub fn detect(mountinfo: &Path, unified: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(mountinfo)?;
        let mut v1 = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount) = left.split_whitespace().nth(4) else {
                continue;
            };
            let mut r = right.split_whitespace();
            let (Some(fstype), Some(_src), Some(opts)) = (r.next(), r.next(), r.next()) else {
                continue;
            };
            if fstype == "cgroup" {
                let ctrls: Vec<String> = opts
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro"
                                | "relatime"
                                | "nosuid"
                                | "nodev"
                                | "noexec"
                                | "clone_children"
                        )
                    })
                    .filter(|o| !o.starts_with("release_agent="))
                    .map(str::to_string)
                    .collect();
                v1.push((
                    PathBuf::from(crate::cgroup::detect::unescape_mount(mount)),
                    ctrls,
                ));
            }
        }
        let v2_controllers =
            std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
        let v1_cpu = v1.iter().any(|(_, c)| c.iter().any(|x| x == "cpu"));
        if !v1_cpu && v2_controllers.split_whitespace().any(|c| c == "cpu") {
            Ok(Self::V2(unified.to_path_buf()))
        } else {
            Ok(Self::V1(v1))
        }
    }
}

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
    let wanted = h.cpu_controller();
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
                Hierarchies::V2(m) => m.clone(),
                Hierarchies::V1(_) => h
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
    fn mountinfo_v1_and_v2() {
        let d = tempfile::tempdir().unwrap();
        let mi = d.path().join("mountinfo");
        std::fs::write(
            &mi,
            "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
             31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let h = Hierarchies::detect(&mi, d.path()).unwrap();
        assert!(!h.is_v2());
        assert_eq!(
            h.dir("cpuacct", Path::new("/a/b")),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a/b"))
        );
        assert_eq!(h.mount("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(
            h.mount("name=systemd"),
            Some(Path::new("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(h.thread_list(), "tasks");
        std::fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(
            &mi,
            "33 25 0:29 / /sys/fs/cgroup cgroup2 rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let h = Hierarchies::detect(&mi, d.path()).unwrap();
        assert!(h.is_v2());
        assert_eq!(h.thread_list(), "cgroup.threads");
    }

    #[test]
    fn this_machine_resolves_its_own_process() {
        let h = Hierarchies::detect(
            Path::new("/proc/self/mountinfo"),
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
