//! Uniquely named, self-removing cgroup subtrees for tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the cgroup filesystems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Errors of the test cgroup helper.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither a cgroup v2 root with controllers nor v1 hierarchies were found.
    #[error(
        "no usable cgroup hierarchy under {CGROUP_ROOT}: mount cgroup v1 or v2 and run as root"
    )]
    NoHierarchy,
    /// A v1 hierarchy the test asked for is not mounted.
    #[error("cgroup v1 controller `{0}` is not mounted at {CGROUP_ROOT}/{0}")]
    MissingController(String),
    /// A filesystem operation on a cgroup file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The cgroup file or directory.
        path: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
}

pub use colo_config::agent::CgroupVersion;

/// Detects the cgroup version the machine runs: v2 when `/sys/fs/cgroup/cgroup.controllers`
/// lists `memory`, v1 when `/sys/fs/cgroup/memory` is a v1 hierarchy (never
/// [`CgroupVersion::Auto`]).
pub fn cgroup_version() -> Result<CgroupVersion, CgroupError> {
    let root = Path::new(CGROUP_ROOT);
    if let Ok(list) = fs::read_to_string(root.join("cgroup.controllers"))
        && list.split_whitespace().any(|c| c == "memory")
    {
        return Ok(CgroupVersion::V2);
    }
    if root.join("memory/memory.limit_in_bytes").exists() {
        return Ok(CgroupVersion::V1);
    }
    Err(CgroupError::NoHierarchy)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A cgroup subtree `colo-test-<pid>-<n>` owned by one test, removed on drop.
///
/// On v1 it exists once per requested hierarchy (always including `memory`); on v2 it is one
/// directory under the root, which enables the requested controllers for its children when the
/// first child is made with [`mkdir_child`](Self::mkdir_child).
#[derive(Debug)]
pub struct TestCgroup {
    version: CgroupVersion,
    name: String,
    controllers: Vec<String>,
}

impl TestCgroup {
    /// Creates the subtree for `controllers` (v1 names such as `cpu`, `cpuacct`, `blkio`,
    /// `pids`, `cpuset`, `freezer`; on v2 the same names map to `cpu`, `io`, `pids`, `cpuset`)
    /// with `memory.limit_in_bytes` / `memory.max` set to `memory_limit` bytes.
    pub fn new(controllers: &[&str], memory_limit: u64) -> Result<Self, CgroupError> {
        let version = cgroup_version()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("colo-test-{}-{n}", std::process::id());
        let mut wanted: Vec<String> = vec!["memory".into()];
        for c in controllers {
            if !wanted.iter().any(|w| w == c) {
                wanted.push((*c).to_string());
            }
        }
        let cg = Self {
            version,
            name,
            controllers: wanted,
        };
        if version == CgroupVersion::V1 {
            for c in &cg.controllers {
                let base = Path::new(CGROUP_ROOT).join(c);
                if !base.join("cgroup.procs").exists() {
                    return Err(CgroupError::MissingController(c.clone()));
                }
                mkdir(&base.join(&cg.name))?;
                if c == "cpuset" {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let parent = read(&base.join(f))?;
                        write(&base.join(&cg.name).join(f), parent.trim())?;
                    }
                }
            }
            cg.write("memory", "memory.limit_in_bytes", &memory_limit.to_string())?;
        } else {
            let dir = Path::new(CGROUP_ROOT).join(&cg.name);
            mkdir(&dir)?;
            cg.write("memory", "memory.max", &memory_limit.to_string())?;
        }
        Ok(cg)
    }

    /// v2: enables the subtree's controllers for its children. Done when the first child is
    /// made, not before: a v2 cgroup that enables controllers for its children may hold no
    /// process, and a test may put one in the subtree itself ([`add_pid`](Self::add_pid)).
    fn enable_for_children(&self) -> Result<(), CgroupError> {
        let dir = self.dir("memory");
        let available = read(&dir.join("cgroup.controllers"))?;
        let enable: Vec<String> = self
            .controllers
            .iter()
            .map(|c| v2_name(c).to_string())
            .filter(|c| available.split_whitespace().any(|a| a == c))
            .map(|c| format!("+{c}"))
            .collect();
        if !enable.is_empty() {
            write(&dir.join("cgroup.subtree_control"), &enable.join(" "))?;
        }
        Ok(())
    }

    /// The cgroup version in use (V1 or V2).
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The subtree's name, relative to the root of each hierarchy (`colo-test-<pid>-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory of this subtree in `controller`'s hierarchy (v2: the one directory).
    pub fn dir(&self, controller: &str) -> PathBuf {
        if self.version == CgroupVersion::V1 {
            Path::new(CGROUP_ROOT).join(controller).join(&self.name)
        } else {
            Path::new(CGROUP_ROOT).join(&self.name)
        }
    }

    /// Writes `value` to `file` of this subtree in `controller`'s hierarchy.
    pub fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        write(&self.dir(controller).join(file), value)
    }

    /// Reads `file` of this subtree in `controller`'s hierarchy.
    pub fn read(&self, controller: &str, file: &str) -> Result<String, CgroupError> {
        read(&self.dir(controller).join(file))
    }

    /// Creates `child` (a relative path) below the subtree in every hierarchy it spans, and
    /// returns its path relative to the hierarchy roots.
    pub fn mkdir_child(&self, child: &str) -> Result<String, CgroupError> {
        if self.version == CgroupVersion::V2 {
            self.enable_for_children()?;
        }
        for dir in self.dirs() {
            let path = dir.join(child);
            mkdir(&path)?;
            if self.version == CgroupVersion::V1
                && dir.starts_with(Path::new(CGROUP_ROOT).join("cpuset"))
            {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let parent = read(&path.parent().unwrap_or(&dir).join(f))?;
                    write(&path.join(f), parent.trim())?;
                }
            }
        }
        Ok(format!("{}/{child}", self.name))
    }

    /// Moves process `pid` (all its threads) into the subtree in every hierarchy it spans.
    pub fn add_pid(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Every directory of the subtree (one per v1 hierarchy, or the single v2 one).
    fn dirs(&self) -> Vec<PathBuf> {
        if self.version == CgroupVersion::V1 {
            self.controllers.iter().map(|c| self.dir(c)).collect()
        } else {
            vec![self.dir("memory")]
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.dirs() {
            if let Err(e) = remove_tree(&dir) {
                eprintln!("colo-testkit: could not remove {}: {e}", dir.display());
            }
        }
        // An OCI runtime makes a container's cgroup in every hierarchy of the node, beneath the
        // same path: the subtree's name is this test's in the others too.
        for mount in cgroup_mounts() {
            let dir = mount.join(&self.name);
            if let Err(e) = remove_tree(&dir) {
                eprintln!("colo-testkit: could not remove {}: {e}", dir.display());
            }
        }
    }
}

/// Every cgroup (v1 or v2) mount of the node.
fn cgroup_mounts() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mount = pre.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// Maps a v1 controller name onto its v2 counterpart.
fn v2_name(controller: &str) -> &str {
    match controller {
        "blkio" => "io",
        "cpuacct" => "cpu",
        other => other,
    }
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir(path).map_err(|source| CgroupError::Io {
        op: "mkdir",
        path: path.into(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Io {
        op: "write",
        path: path.into(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Io {
        op: "read",
        path: path.into(),
        source,
    })
}

/// Removes a cgroup directory and its children, deepest first.
///
/// Processes still inside were started by the test that owns the subtree (nothing else is ever
/// placed in a uniquely named test cgroup), so they are killed; then the directories are removed,
/// retrying briefly while the kernel finishes reaping them.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut children = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            children.push(entry.path());
        }
    }
    for child in children {
        remove_tree(&child)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) with a pid that lives in this test's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_is_created_limited_and_removed() {
        if !crate::root_or_skip("subtree_is_created_limited_and_removed") {
            return;
        }
        let _lock = crate::host_lock();
        let cg = TestCgroup::new(&["cpu", "pids"], 64 << 20).expect("create test cgroup");
        assert!(
            cg.name()
                .starts_with(&format!("colo-test-{}-", std::process::id()))
        );
        let limit_file = match cg.version() {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 | CgroupVersion::Auto => "memory.max",
        };
        assert_eq!(
            cg.read("memory", limit_file).unwrap().trim(),
            (64u64 << 20).to_string()
        );
        let child = cg.mkdir_child("vcpu").unwrap();
        assert!(child.ends_with("/vcpu"));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        cg.add_pid(sleeper.id()).unwrap();
        assert!(
            cg.read("memory", "cgroup.procs")
                .unwrap()
                .contains(&sleeper.id().to_string())
        );
        let dirs = cg.dirs();
        drop(cg);
        for d in dirs {
            assert!(!d.exists(), "{} should be gone", d.display());
        }
        // The sleeper was in the subtree, so the drop killed it.
        let status = sleeper.wait().unwrap();
        assert!(!status.success());
    }
}
