//! Finding the cgroup hierarchies: which version the node runs, where each v1 controller is
//! mounted, and which cgroup the agent itself is in.

use std::path::{Path, PathBuf};

use super::CgroupError;

/// The cgroup version the agent drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// One hierarchy per controller (or group of co-mounted controllers).
    V1,
    /// The unified hierarchy.
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// One mounted v1 hierarchy: its mount point and the controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted (e.g. `/sys/fs/cgroup/cpu,cpuacct`).
    pub mount: PathBuf,
    /// Its controllers (e.g. `["cpu", "cpuacct"]`).
    pub controllers: Vec<String>,
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
pub(crate) fn unescape_mount(s: &str) -> String {
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

/// The v1 hierarchies mounted on this node (from `/proc/self/mountinfo`), skipping named
/// hierarchies without controllers (`name=systemd`).
pub fn v1_hierarchies() -> Result<Vec<V1Hierarchy>, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
        CgroupError::Detect(format!("cannot read /proc/self/mountinfo: {source}"))
    })?;
    Ok(v1_from_mountinfo(&text))
}

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
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
        CgroupError::Detect(format!("cannot read /proc/self/mountinfo: {source}"))
    })?;
    detect_from_mountinfo(&text, mount)
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
}
