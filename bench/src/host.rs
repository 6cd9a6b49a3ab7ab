//! The benchmark's own cgroups, processes started inside them, and the counters it reads.
//! Everything it creates is named `colo-bench*` and removed when it is done.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Errors of the benchmark's host plumbing.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Something the benchmark needs is missing.
    #[error("{0}")]
    Missing(String),
    /// A run did not measure the online service, and the benchmark stopped rather than report
    /// figures of a service that did not serve.
    #[error(
        "{run}: INVALID run, the online service was not measured; stopping: {cause}\n  {evidence}"
    )]
    NotMeasured {
        /// Which run (benchmark, scenario, mode, repetition or trial).
        run: String,
        /// Why it is invalid.
        cause: crate::validity::InvalidRun,
        /// The load generator's counts and the service's error log.
        evidence: String,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HostError + 'a {
    move |source| HostError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The cgroup version of this host.
pub fn is_v2() -> bool {
    std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|c| c.contains("cpu"))
        && !Path::new("/sys/fs/cgroup/cpu/cpu.shares").exists()
}

/// The mount of a v1 controller (handles co-mounted `cpu,cpuacct`).
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        let mut r = right.split_whitespace();
        (r.next()? == "cgroup" && r.nth(1)?.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(mount))
    })
}

/// A cgroup the benchmark owns, `name` at the root of each hierarchy it needs.
#[derive(Debug)]
pub struct BenchCgroup {
    name: String,
    dirs: Vec<(String, PathBuf)>,
}

impl BenchCgroup {
    /// Creates (or reuses) `name` for `controllers` (v1 names; v2 uses one directory) with an
    /// optional memory limit.
    pub fn create(
        name: &str,
        controllers: &[&str],
        memory_limit: Option<u64>,
    ) -> Result<Self, HostError> {
        let mut dirs = Vec::new();
        if is_v2() {
            let d = PathBuf::from("/sys/fs/cgroup").join(name);
            std::fs::create_dir_all(&d).map_err(io("mkdir", &d))?;
            for c in controllers {
                dirs.push(((*c).to_string(), d.clone()));
            }
        } else {
            for c in controllers {
                let m = v1_mount(c).ok_or_else(|| {
                    HostError::Missing(format!("cgroup v1 controller {c} is not mounted"))
                })?;
                let d = m.join(name);
                std::fs::create_dir_all(&d).map_err(io("mkdir", &d))?;
                if *c == "cpuset" {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = std::fs::read_to_string(m.join(f)).map_err(io("read", &m))?;
                        std::fs::write(d.join(f), v.trim()).map_err(io("write", &d))?;
                    }
                }
                dirs.push(((*c).to_string(), d));
            }
        }
        let cg = Self {
            name: name.to_string(),
            dirs,
        };
        if let Some(limit) = memory_limit {
            let f = if is_v2() {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            cg.write("memory", f, &limit.to_string())?;
        }
        Ok(cg)
    }

    /// An existing cgroup (e.g. the agent's root) by name, for the controllers given.
    pub fn existing(name: &str, controllers: &[&str]) -> Self {
        let dirs = controllers
            .iter()
            .filter_map(|c| {
                let base = if is_v2() {
                    Some(PathBuf::from("/sys/fs/cgroup"))
                } else {
                    v1_mount(c)
                }?;
                Some(((*c).to_string(), base.join(name.trim_start_matches('/'))))
            })
            .collect();
        Self {
            name: name.to_string(),
            dirs,
        }
    }

    /// The name (relative to the hierarchy roots).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory in `controller`'s hierarchy.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
    }

    /// Writes a file of this cgroup.
    pub fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), HostError> {
        let d = self.dir(controller).ok_or_else(|| {
            HostError::Missing(format!("{} has no {controller} directory", self.name))
        })?;
        let p = d.join(file);
        std::fs::write(&p, value).map_err(io("write", &p))
    }

    /// `cgroup.procs` of every hierarchy (unique).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .dirs
            .iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// CPU time used by the cgroup and its descendants, ns.
    pub fn cpu_ns(&self) -> u64 {
        cgroup_cpu_ns(
            self.dir("cpuacct")
                .or_else(|| self.dir("cpu"))
                .unwrap_or(Path::new("/nonexistent")),
        )
    }

    /// Removes the cgroup and its children (deepest first), waiting briefly for exiting tasks.
    pub fn remove(&self) {
        for (_, d) in &self.dirs {
            remove_tree(d);
        }
    }
}

/// Removes a cgroup directory tree, children first.
pub fn remove_tree(d: &Path) {
    if let Ok(entries) = std::fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while d.exists() && std::fs::remove_dir(d).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every pid in a cgroup directory tree.
pub fn cgroup_procs_recursive(d: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string(d.join("cgroup.procs"))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(cgroup_procs_recursive(&e.path()));
            }
        }
    }
    out
}

/// CPU time of a cgroup directory (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`), ns.
pub fn cgroup_cpu_ns(dir: &Path) -> u64 {
    if let Ok(t) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
        return t.trim().parse().unwrap_or(0);
    }
    std::fs::read_to_string(dir.join("cpu.stat"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .map_or(0, |us| us * 1000)
}

/// Starts `cmd` inside the cgroups whose `cgroup.procs` files are given: the child writes its
/// own pid (`0`) into each between fork and exec, so everything it starts is charged there.
pub fn spawn_in(cmd: &mut Command, procs_files: &[PathBuf]) -> Result<Child, HostError> {
    let paths: Vec<CString> = procs_files
        .iter()
        .map(|p| {
            CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|_| HostError::Missing(format!("bad path {}", p.display())))
        })
        .collect::<Result<_, _>>()?;
    // SAFETY: the closure only calls open/write/close (async-signal-safe) on C strings made
    // before the fork, and touches no allocator or lock.
    unsafe {
        cmd.pre_exec(move || {
            for p in &paths {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if n != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let prog = format!("{:?}", cmd.get_program());
    cmd.spawn().map_err(|source| HostError::Io {
        op: "spawn",
        path: PathBuf::from(prog),
        source,
    })
}

/// Sends `sig` to `pid` (a process this benchmark started).
pub fn signal(pid: u32, sig: i32) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid we started; no memory involved.
        unsafe { libc::kill(p, sig) };
    }
}

/// Node CPU counters from `/proc/stat`, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSnap {
    /// Busy (not idle, iowait or steal).
    pub busy_ns: u64,
    /// Stolen.
    pub steal_ns: u64,
    /// Everything.
    pub total_ns: u64,
    /// CPUs.
    pub cpus: u32,
}

impl CpuSnap {
    /// Reads `/proc/stat`.
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // SAFETY: sysconf reads a constant.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .unwrap_or(100)
            .max(1);
        let ns = 1_000_000_000 / hz;
        let mut s = Self::default();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("cpu ") {
                let v: Vec<u64> = rest
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0))
                    .collect();
                let g = |i: usize| v.get(i).copied().unwrap_or(0);
                s.busy_ns = (g(0) + g(1) + g(2) + g(5) + g(6)) * ns;
                s.steal_ns = g(7) * ns;
                s.total_ns = (g(0) + g(1) + g(2) + g(3) + g(4) + g(5) + g(6) + g(7)) * ns;
            } else if l.starts_with("cpu") {
                s.cpus += 1;
            }
        }
        s
    }
}

/// CPU time of a process (all threads, user + system), ns.
pub fn proc_cpu_ns(pid: u32) -> u64 {
    let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(i) = t.rfind(')') else { return 0 };
    let f: Vec<&str> = t[i + 2..].split_whitespace().collect();
    // SAFETY: sysconf reads a constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    let g = |k: usize| f.get(k).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the comm.
    (g(11) + g(12)) * (1_000_000_000 / hz)
}

/// Resident memory of a process (`VmRSS`), bytes.
pub fn proc_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read() {
        let s = CpuSnap::now();
        assert!(s.cpus >= 1 && s.total_ns > 0);
        assert!(proc_cpu_ns(std::process::id()) > 0 || proc_rss(std::process::id()) > 0);
        assert!(proc_rss(std::process::id()) > 0);
        assert!(loadavg() >= 0.0);
    }
}
