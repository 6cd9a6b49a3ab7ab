//! Finding the cgroup hierarchies once, at start: which version the node runs (or the one
//! `cgroup.version` names), where each v1 controller is mounted, and which cgroup the agent
//! itself is in. The job side (writes) and the QoS side (kept-fd reads) share the result,
//! [`Hierarchies`], so they cannot disagree about the host.

use std::path::{Path, PathBuf};

use colo_config::agent::CgroupVersion;

use super::CgroupError;

/// One mounted v1 hierarchy: its mount point and the controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted (e.g. `/sys/fs/cgroup/cpu,cpuacct`).
    pub mount: PathBuf,
    /// Its controllers (e.g. `["cpu", "cpuacct"]`).
    pub controllers: Vec<String>,
}

/// The node's cgroup hierarchies, detected once at start. The job side writes through them
/// ([`super::CgroupTree`]) and the QoS side reads through them, so both see the same host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchies {
    /// v1 (or hybrid): one hierarchy per controller or group of co-mounted controllers.
    V1 {
        /// Hierarchies carrying controllers.
        controllers: Vec<V1Hierarchy>,
        /// Named hierarchies without controllers (`name=systemd`), read to find systemd units.
        named: Vec<V1Hierarchy>,
    },
    /// v2: the unified mount.
    V2 {
        /// Where it is mounted.
        mount: PathBuf,
    },
}

impl Hierarchies {
    /// Reads `/proc/self/mountinfo`: the version is `version` when one is configured (never
    /// auto-detected against it), else detected as [`detect_version`] does; v2 uses `mount`.
    pub fn detect(version: CgroupVersion, mount: &Path) -> Result<Self, CgroupError> {
        let text = read_mountinfo()?;
        Self::from_mountinfo(&text, version, mount)
    }

    /// [`detect`](Self::detect) from the text of a mountinfo file.
    pub fn from_mountinfo(
        text: &str,
        version: CgroupVersion,
        mount: &Path,
    ) -> Result<Self, CgroupError> {
        let version = match version {
            CgroupVersion::Auto => detect_from_mountinfo(text, mount)?,
            v => v,
        };
        Ok(if version == CgroupVersion::V2 {
            Self::V2 {
                mount: mount.to_path_buf(),
            }
        } else {
            Self::V1 {
                controllers: v1_from_mountinfo(text),
                named: named_from_mountinfo(text),
            }
        })
    }

    /// The version in use (never [`CgroupVersion::Auto`]).
    pub fn version(&self) -> CgroupVersion {
        match self {
            Self::V1 { .. } => CgroupVersion::V1,
            Self::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// Whether the node runs cgroup v2.
    pub fn is_v2(&self) -> bool {
        matches!(self, Self::V2 { .. })
    }

    /// The mount carrying `controller` (v2: the unified mount). A named v1 hierarchy is found
    /// by its option (`name=systemd`).
    pub fn mount(&self, controller: &str) -> Option<&Path> {
        match self {
            Self::V2 { mount } => Some(mount),
            Self::V1 { controllers, named } => controllers
                .iter()
                .chain(named)
                .find(|h| h.controllers.iter().any(|c| c == controller))
                .map(|h| h.mount.as_path()),
        }
    }

    /// The directory of the cgroup `rel` (relative to the hierarchy root, with or without a
    /// leading `/`) for `controller`.
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
}

/// One line of `/proc/self/mountinfo` that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    mount: PathBuf,
    fstype: String,
    super_options: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        // Fields: id parent maj:min root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mut r = right.split_whitespace();
        let (Some(fstype), Some(_source), Some(opts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        out.push(CgroupMount {
            mount: PathBuf::from(unescape_mount(mount)),
            fstype: fstype.to_string(),
            super_options: opts.split(',').map(str::to_string).collect(),
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every cgroup mount of the node (v1 hierarchies, named ones and any cgroup2 mount), as an OCI
/// runtime sees them: it makes a container's cgroup in each.
pub fn every_cgroup_mount() -> Vec<PathBuf> {
    let text = read_mountinfo().unwrap_or_default();
    let mut out: Vec<PathBuf> = parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| m.mount)
        .collect();
    out.dedup();
    out
}

fn read_mountinfo() -> Result<String, CgroupError> {
    std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
        CgroupError::Detect(format!("cannot read /proc/self/mountinfo: {source}"))
    })
}

/// The named v1 hierarchies (`name=systemd`), each listed under its `name=` option.
fn named_from_mountinfo(text: &str) -> Vec<V1Hierarchy> {
    parse_mountinfo(text)
        .into_iter()
        .filter(|m| m.fstype == "cgroup")
        .filter_map(|m| {
            let name = m.super_options.iter().find(|o| o.starts_with("name="))?;
            Some(V1Hierarchy {
                controllers: vec![name.clone()],
                mount: m.mount,
            })
        })
        .collect()
}

/// The v1 hierarchies carrying controllers, skipping named hierarchies without controllers
/// (`name=systemd`).
fn v1_from_mountinfo(text: &str) -> Vec<V1Hierarchy> {
    const KNOWN: &[&str] = &[
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "blkio",
        "pids",
        "freezer",
        "devices",
        "hugetlb",
        "net_cls",
        "net_prio",
        "perf_event",
        "rdma",
        "misc",
    ];
    let mut out: Vec<V1Hierarchy> = Vec::new();
    for m in parse_mountinfo(text) {
        if m.fstype != "cgroup" {
            continue;
        }
        let controllers: Vec<String> = m
            .super_options
            .iter()
            .filter(|o| KNOWN.contains(&o.as_str()))
            .cloned()
            .collect();
        if controllers.is_empty() || out.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        out.push(V1Hierarchy {
            mount: m.mount,
            controllers,
        });
    }
    out
}

/// Detects the version: v2 when `mount` itself is a cgroup2 mount, v1 when a v1 `memory`
/// hierarchy is mounted.
pub fn detect_version(mount: &Path) -> Result<CgroupVersion, CgroupError> {
    detect_from_mountinfo(&read_mountinfo()?, mount)
}

fn detect_from_mountinfo(text: &str, mount: &Path) -> Result<CgroupVersion, CgroupError> {
    let mounts = parse_mountinfo(text);
    if mounts
        .iter()
        .any(|m| m.fstype == "cgroup2" && m.mount == mount)
    {
        return Ok(CgroupVersion::V2);
    }
    if mounts
        .iter()
        .any(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == "memory"))
    {
        return Ok(CgroupVersion::V1);
    }
    Err(CgroupError::Detect(format!(
        "{} is not a cgroup2 mount and no cgroup v1 memory hierarchy is mounted; mount cgroup2 \
         at {} or set cgroup.version",
        mount.display(),
        mount.display()
    )))
}

/// The agent's own cgroup in the unified hierarchy (the `0::` line of `/proc/self/cgroup`),
/// relative to the mount, without the leading `/`.
pub fn own_v2_cgroup() -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| CgroupError::Detect(format!("cannot read /proc/self/cgroup: {e}")))?;
    own_v2_from(&text)
}

fn own_v2_from(text: &str) -> Result<PathBuf, CgroupError> {
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| CgroupError::Detect("no `0::` line in /proc/self/cgroup".into()))?;
    Ok(PathBuf::from(path.trim().trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const COMOUNT: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:1 - cgroup cgroup rw,cpu,cpuacct
";
    const UNIFIED: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn detects_hybrid_as_v1_and_unified_as_v2() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            detect_from_mountinfo(HYBRID, root).unwrap(),
            CgroupVersion::V1
        );
        assert_eq!(
            detect_from_mountinfo(UNIFIED, root).unwrap(),
            CgroupVersion::V2
        );
        // The hybrid's cgroup2 mount is v2 when asked for by its own path.
        assert_eq!(
            detect_from_mountinfo(HYBRID, Path::new("/sys/fs/cgroup/unified")).unwrap(),
            CgroupVersion::V2
        );
        assert!(detect_from_mountinfo("", root).is_err());
    }

    #[test]
    fn v1_hierarchies_skip_named_ones_and_keep_co_mounts() {
        let h = v1_from_mountinfo(HYBRID);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].controllers, vec!["cpu"]);
        assert_eq!(h[2].mount, PathBuf::from("/sys/fs/cgroup/memory"));
        let c = v1_from_mountinfo(COMOUNT);
        assert_eq!(c[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(c[0].mount, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
    }

    #[test]
    fn own_cgroup_and_escapes() {
        assert_eq!(
            own_v2_from("1:cpu:/\n0::/system.slice/colo-agent.service\n").unwrap(),
            PathBuf::from("system.slice/colo-agent.service")
        );
        assert!(own_v2_from("1:cpu:/\n").is_err());
        assert_eq!(unescape_mount(r"/a\040b"), "/a b");
    }

    #[test]
    fn a_configured_version_wins_over_detection() {
        // A hybrid host: auto-detection at /sys/fs/cgroup says v1, but the operator set
        // `cgroup.version: v2` with the unified mount. Every side of the agent gets v2 there.
        let unified = Path::new("/sys/fs/cgroup/unified");
        let h = Hierarchies::from_mountinfo(HYBRID, CgroupVersion::V2, unified).unwrap();
        assert_eq!(
            h,
            Hierarchies::V2 {
                mount: unified.into()
            }
        );
        assert_eq!(h.thread_list(), "cgroup.threads");
        let auto =
            Hierarchies::from_mountinfo(HYBRID, CgroupVersion::Auto, Path::new("/sys/fs/cgroup"))
                .unwrap();
        assert_eq!(auto.version(), CgroupVersion::V1);
        // And v1 when configured so on a unified host (no v1 hierarchy to use).
        let v1 =
            Hierarchies::from_mountinfo(UNIFIED, CgroupVersion::V1, Path::new("/sys/fs/cgroup"))
                .unwrap();
        assert_eq!(v1.version(), CgroupVersion::V1);
        assert_eq!(v1.mount("cpu"), None);
    }

    #[test]
    fn mountinfo_v1_and_v2() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
             31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchies::from_mountinfo(mi, CgroupVersion::Auto, Path::new("/sys/fs/cgroup"))
            .unwrap();
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
        let mi = "33 25 0:29 / /sys/fs/cgroup cgroup2 rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchies::from_mountinfo(mi, CgroupVersion::Auto, Path::new("/sys/fs/cgroup"))
            .unwrap();
        assert!(h.is_v2());
        assert_eq!(h.thread_list(), "cgroup.threads");
    }
}
