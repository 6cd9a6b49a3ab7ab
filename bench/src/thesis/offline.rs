//! The offline side of a run: one work unit both sandboxes do, the container's script for it,
//! the static host settings arms (2) and (3) add (a blkio cap, a CPU quota on the agent's root),
//! and the disk those settings name.
//!
//! A work unit is `io_mib` MiB written to a file on the online service's disk, plus (in a
//! container) `mem_mib` MiB of memory allocated and touched and `cpu_units` busy loops. The
//! workload guest streams `io=write:<io_mib>:forever` after touching `mem=<mem_mib>` once, so
//! its units are counted from the bytes its disk wrote; its memory is touched once, not per unit.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::host::{BenchCgroup, HostError};

/// What one offline work unit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WorkUnit {
    /// MiB written (buffered in the container, through virtio-blk in the VM).
    pub io_mib: u64,
    /// MiB of memory allocated and touched.
    pub mem_mib: u64,
    /// Busy-loop units (in the container 100,000 shell iterations each; not calibrated
    /// against the guest's units).
    pub cpu_units: u64,
}

impl WorkUnit {
    /// Work units in `bytes` of disk IO.
    pub fn units_of_bytes(&self, bytes: u64) -> f64 {
        if self.io_mib == 0 {
            return 0.0;
        }
        bytes as f64 / (self.io_mib << 20) as f64
    }

    /// The container's loop: one unit per pass, a byte appended to `/data/units` after each.
    /// `dd` writes through the page cache as batch programs do; `dd bs=<mem>M` from
    /// `/dev/zero` allocates and fills a buffer of that size.
    pub fn container_script(&self) -> String {
        let mut s = String::from("while :; do ");
        if self.io_mib > 0 {
            s.push_str(&format!(
                "dd if=/dev/zero of=/data/f bs=1M count={} 2>/dev/null; ",
                self.io_mib
            ));
        }
        if self.mem_mib > 0 {
            s.push_str(&format!(
                "dd if=/dev/zero of=/dev/null bs={}M count=1 2>/dev/null; ",
                self.mem_mib
            ));
        }
        if self.cpu_units > 0 {
            s.push_str(&format!(
                "i=0; while [ $i -lt {} ]; do i=$((i+1)); done; ",
                self.cpu_units * 100_000
            ));
        }
        s.push_str("echo -n . >> /data/units; done");
        s
    }

    /// The workload guest's `io=` value.
    pub fn guest_io(&self) -> String {
        format!("write:{}:forever", self.io_mib.max(1))
    }
}

/// Units a container reported: the size of its `units` file.
pub fn container_units(volume: &Path) -> u64 {
    std::fs::metadata(volume.join("units")).map_or(0, |m| m.len())
}

/// `MAJOR:MINOR` of the whole disk that holds `path` (a partition's parent disk), as blkio
/// and io.max name it.
pub fn disk_of(path: &Path) -> Result<String, HostError> {
    let m = std::fs::metadata(path).map_err(|source| HostError::Io {
        op: "stat",
        path: path.to_path_buf(),
        source,
    })?;
    let dev = m.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if sys.join("partition").exists()
        && let Some(parent) = std::fs::canonicalize(&sys)
            .ok()
            .and_then(|p| p.parent().map(|p| p.join("dev")))
        && let Ok(d) = std::fs::read_to_string(parent)
    {
        return Ok(d.trim().to_string());
    }
    if !sys.exists() {
        return Err(HostError::Missing(format!(
            "{} is on device {maj}:{min}, which is not a block device (tmpfs or overlay?): give --out on a disk",
            path.display()
        )));
    }
    Ok(format!("{maj}:{min}"))
}

/// Caps reads and writes of `cg` on `disk` at `bps` bytes per second (v1
/// `blkio.throttle.*_bps_device`, which throttles only IO that reaches the disk in the task's
/// context — direct IO, reads — not buffered writes, which writeback issues; v2 `io.max`).
pub fn set_io_cap(cg: &BenchCgroup, v2: bool, disk: &str, bps: u64) -> Result<(), HostError> {
    if v2 {
        cg.write("blkio", "io.max", &format!("{disk} rbps={bps} wbps={bps}"))
    } else {
        cg.write(
            "blkio",
            "blkio.throttle.read_bps_device",
            &format!("{disk} {bps}"),
        )?;
        cg.write(
            "blkio",
            "blkio.throttle.write_bps_device",
            &format!("{disk} {bps}"),
        )
    }
}

/// Removes the cap of [`set_io_cap`].
pub fn clear_io_cap(cg: &BenchCgroup, v2: bool, disk: &str) {
    let _ = if v2 {
        cg.write("blkio", "io.max", &format!("{disk} rbps=max wbps=max"))
    } else {
        let _ = cg.write(
            "blkio",
            "blkio.throttle.read_bps_device",
            &format!("{disk} 0"),
        );
        cg.write(
            "blkio",
            "blkio.throttle.write_bps_device",
            &format!("{disk} 0"),
        )
    };
}

/// CFS period of the static quota, µs.
const PERIOD_US: u64 = 100_000;

/// A CPU quota of `millicores` on `cg` (`cpu.cfs_quota_us` / `cpu.max`).
pub fn set_cpu_quota(cg: &BenchCgroup, v2: bool, millicores: u32) -> Result<(), HostError> {
    let quota = PERIOD_US * u64::from(millicores) / 1000;
    if v2 {
        cg.write("cpu", "cpu.max", &format!("{quota} {PERIOD_US}"))
    } else {
        cg.write("cpu", "cpu.cfs_period_us", &PERIOD_US.to_string())?;
        cg.write("cpu", "cpu.cfs_quota_us", &quota.to_string())
    }
}

/// Removes the quota of [`set_cpu_quota`].
pub fn clear_cpu_quota(cg: &BenchCgroup, v2: bool) {
    let _ = if v2 {
        cg.write("cpu", "cpu.max", "max")
    } else {
        cg.write("cpu", "cpu.cfs_quota_us", "-1")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_from_bytes_and_never_divide_by_zero() {
        let u = WorkUnit {
            io_mib: 64,
            mem_mib: 256,
            cpu_units: 0,
        };
        assert_eq!(u.units_of_bytes(128 << 20), 2.0);
        let none = WorkUnit { io_mib: 0, ..u };
        assert_eq!(none.units_of_bytes(128 << 20), 0.0);
        assert_eq!(u.guest_io(), "write:64:forever");
    }

    #[test]
    fn the_container_script_does_each_part_of_a_unit() {
        let s = WorkUnit {
            io_mib: 64,
            mem_mib: 256,
            cpu_units: 2,
        }
        .container_script();
        assert!(s.contains("of=/data/f bs=1M count=64"), "{s}");
        assert!(s.contains("bs=256M count=1"), "{s}");
        assert!(s.contains("-lt 200000"), "{s}");
        assert!(s.ends_with("echo -n . >> /data/units; done"), "{s}");
        let io_only = WorkUnit {
            io_mib: 8,
            mem_mib: 0,
            cpu_units: 0,
        }
        .container_script();
        assert!(!io_only.contains("/dev/null bs=") && !io_only.contains("-lt"));
    }

    #[test]
    fn the_disk_of_a_tmp_path_is_named_or_refused_with_the_cause() {
        match disk_of(&std::env::temp_dir()) {
            Ok(d) => assert!(d.contains(':'), "{d}"),
            Err(e) => assert!(e.to_string().contains("not a block device"), "{e}"),
        }
    }
}
