//! The sampler: every 10 ms, the offline subtree's and the online cgroup's CPU, nginx's own CPU
//! and the node's idle time, on CLOCK_MONOTONIC.

use std::path::{Path, PathBuf};

use crate::host::{BenchCgroup, CpuSnap, HostError, cgroup_cpu_ns};
use crate::loadgen::mono_ns;

/// One sample: CLOCK_MONOTONIC ns, the offline subtree's CPU ns, the online cgroup's CPU ns, the
/// node's idle CPU ns (idle + iowait in `/proc/stat`, tick resolution), nginx's CPU ns (its
/// processes' `schedstat`; the rest of the online cgroup is the load generator).
pub(super) type Sample = (u64, u64, u64, u64, u64);

/// CPU ns on record for the processes whose `schedstat` files are given.
pub(super) fn tasks_cpu_ns(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Samples the offline and online cgroups' CPU every 10 ms until `stop`.
pub(super) fn sampler(
    offline: PathBuf,
    online: PathBuf,
    nginx: Vec<PathBuf>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut out = Vec::with_capacity(4096);
        let mut next = mono_ns();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let idle = CpuSnap::now();
            out.push((
                mono_ns(),
                cgroup_cpu_ns(&offline),
                cgroup_cpu_ns(&online),
                idle.total_ns
                    .saturating_sub(idle.busy_ns)
                    .saturating_sub(idle.steal_ns),
                tasks_cpu_ns(&nginx),
            ));
            next += 10_000_000;
            let ts = libc::timespec {
                tv_sec: i64::try_from(next / 1_000_000_000).unwrap_or(0),
                tv_nsec: i64::try_from(next % 1_000_000_000).unwrap_or(0),
            };
            // SAFETY: absolute sleep on CLOCK_MONOTONIC with a timespec we own.
            unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &ts,
                    std::ptr::null_mut(),
                )
            };
        }
        out
    })
}

/// The directory whose CPU counter [`cgroup_cpu_ns`] reads: v1 `cpuacct`, else the `cpu` (v2)
/// directory.
pub(super) fn cpu_dir(cg: &BenchCgroup, what: &str) -> Result<PathBuf, HostError> {
    cg.dir("cpuacct")
        .or(cg.dir("cpu"))
        .map(Path::to_path_buf)
        .ok_or_else(|| HostError::Missing(format!("{what} cgroup")))
}
