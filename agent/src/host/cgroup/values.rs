//! The values the cgroup layer writes (CPU quota, weights, IO limits) and reads (usage
//! statistics), with their v1 and v2 file formats.

/// A CFS bandwidth limit: at most `quota_us` of CPU time per `period_us` (None = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    /// CPU time allowed per period in µs, summed over CPUs; `None` means no limit.
    pub quota_us: Option<u64>,
    /// The period in µs (the kernel accepts 1 ms ..= 1 s).
    pub period_us: u64,
}

impl CpuQuota {
    /// The shortest period the kernel accepts (1 ms).
    pub const MIN_PERIOD_US: u64 = 1_000;
    /// The longest period the kernel accepts (1 s).
    pub const MAX_PERIOD_US: u64 = 1_000_000;
    /// The smallest quota the kernel accepts (1 ms).
    pub const MIN_QUOTA_US: u64 = 1_000;

    /// No limit, with the given period.
    pub fn unlimited(period_us: u64) -> Self {
        Self {
            quota_us: None,
            period_us,
        }
    }

    /// `millicores` thousandths of a CPU per `period_us` (1000 = one full CPU). The quota is
    /// raised to the kernel's minimum of 1 ms when smaller.
    pub fn from_millicores(millicores: u64, period_us: u64) -> Self {
        let quota = millicores.saturating_mul(period_us) / 1000;
        Self {
            quota_us: Some(quota.max(Self::MIN_QUOTA_US)),
            period_us,
        }
    }

    /// The limit in millicores, or None when unlimited.
    pub fn millicores(&self) -> Option<u64> {
        self.quota_us
            .map(|q| q.saturating_mul(1000) / self.period_us.max(1))
    }

    /// The v2 `cpu.max` line: `"<quota|max> <period>"`.
    pub fn to_v2(&self) -> String {
        match self.quota_us {
            Some(q) => format!("{q} {}", self.period_us),
            None => format!("max {}", self.period_us),
        }
    }

    /// Parses a v2 `cpu.max` line.
    pub fn parse_v2(text: &str) -> Option<Self> {
        let mut it = text.split_whitespace();
        let quota = it.next()?;
        let period_us = it.next()?.parse().ok()?;
        let quota_us = if quota == "max" {
            None
        } else {
            Some(quota.parse().ok()?)
        };
        Some(Self {
            quota_us,
            period_us,
        })
    }

    /// The v1 `cpu.cfs_quota_us` value (`-1` = unlimited).
    pub fn v1_quota(&self) -> String {
        match self.quota_us {
            Some(q) => q.to_string(),
            None => "-1".into(),
        }
    }
}

/// Relative CPU weight in cgroup v2 units (1 ..= 10000, default 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuWeight(pub u64);

impl CpuWeight {
    /// The default weight of a cgroup (v2 `cpu.weight` 100, v1 `cpu.shares` 1024).
    pub const DEFAULT: Self = Self(100);

    /// The v2 `cpu.weight` value, clamped to 1 ..= 10000.
    pub fn v2(&self) -> u64 {
        self.0.clamp(1, 10_000)
    }

    /// The equivalent v1 `cpu.shares` (weight 100 = 1024 shares), clamped to 2 ..= 262144.
    pub fn v1_shares(&self) -> u64 {
        (self.v2() * 1024 / 100).clamp(2, 262_144)
    }
}

/// A block device as `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceNumber {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DeviceNumber {
    /// The device a path lives on: the block device itself for a block special file, else the
    /// device holding the file (its filesystem's device).
    pub fn of_path(path: &std::path::Path) -> std::io::Result<Self> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(path)?;
        let dev = if meta.file_type().is_block_device() {
            meta.rdev()
        } else {
            meta.dev()
        };
        Ok(Self {
            major: libc::major(dev),
            minor: libc::minor(dev),
        })
    }
}

impl std::fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Throughput and operation limits on one block device (0 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoLimit {
    /// The device the limit applies to.
    pub device: DeviceNumber,
    /// Read bytes per second.
    pub read_bps: u64,
    /// Write bytes per second.
    pub write_bps: u64,
    /// Read operations per second.
    pub read_iops: u64,
    /// Write operations per second.
    pub write_iops: u64,
}

impl IoLimit {
    /// The v2 `io.max` line for this device (`max` where unlimited).
    pub fn to_v2(&self) -> String {
        let f = |v: u64| {
            if v == 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        format!(
            "{} rbps={} wbps={} riops={} wiops={}",
            self.device,
            f(self.read_bps),
            f(self.write_bps),
            f(self.read_iops),
            f(self.write_iops)
        )
    }

    /// The four v1 `blkio.throttle.*_device` writes: `(file, "MAJ:MIN value")`; a value of 0
    /// removes that rule.
    pub fn to_v1(&self) -> [(&'static str, String); 4] {
        let d = self.device;
        [
            (
                "blkio.throttle.read_bps_device",
                format!("{d} {}", self.read_bps),
            ),
            (
                "blkio.throttle.write_bps_device",
                format!("{d} {}", self.write_bps),
            ),
            (
                "blkio.throttle.read_iops_device",
                format!("{d} {}", self.read_iops),
            ),
            (
                "blkio.throttle.write_iops_device",
                format!("{d} {}", self.write_iops),
            ),
        ]
    }
}

/// Usage counters of one cgroup (and its descendants where the kernel counts hierarchically).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupStats {
    /// CPU time used, ns.
    pub cpu_usage_ns: u64,
    /// Time throttled by CFS bandwidth control, ns (summed over the cgroup and its CPU children).
    pub cpu_throttled_ns: u64,
    /// Periods in which the cgroup (or a CPU child) was throttled.
    pub cpu_nr_throttled: u64,
    /// Memory charged, bytes.
    pub memory_bytes: u64,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
    /// Processes and threads in the cgroup.
    pub pids: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_from_millicores_and_back() {
        let q = CpuQuota::from_millicores(1500, 100_000);
        assert_eq!(q.quota_us, Some(150_000));
        assert_eq!(q.millicores(), Some(1500));
        assert_eq!(q.to_v2(), "150000 100000");
        assert_eq!(q.v1_quota(), "150000");
        // Below the kernel's minimum quota the value is raised to 1 ms.
        assert_eq!(CpuQuota::from_millicores(1, 10_000).quota_us, Some(1000));
        let u = CpuQuota::unlimited(20_000);
        assert_eq!(u.to_v2(), "max 20000");
        assert_eq!(u.v1_quota(), "-1");
        assert_eq!(
            CpuQuota::parse_v2("max 100000"),
            Some(CpuQuota::unlimited(100_000))
        );
        assert_eq!(
            CpuQuota::parse_v2("5000 10000").unwrap().millicores(),
            Some(500)
        );
        assert_eq!(CpuQuota::parse_v2("bogus"), None);
    }

    #[test]
    fn weights_map_between_versions() {
        assert_eq!(CpuWeight::DEFAULT.v1_shares(), 1024);
        assert_eq!(CpuWeight(1).v1_shares(), 10);
        assert_eq!(CpuWeight(0).v2(), 1);
        assert_eq!(CpuWeight(100_000).v2(), 10_000);
    }

    #[test]
    fn io_limit_formats() {
        let l = IoLimit {
            device: DeviceNumber { major: 8, minor: 0 },
            read_bps: 1 << 20,
            write_bps: 0,
            read_iops: 0,
            write_iops: 100,
        };
        assert_eq!(l.to_v2(), "8:0 rbps=1048576 wbps=max riops=max wiops=100");
        let v1 = l.to_v1();
        assert_eq!(
            v1[0],
            ("blkio.throttle.read_bps_device", "8:0 1048576".into())
        );
        assert_eq!(v1[1].1, "8:0 0");
    }

    #[test]
    fn device_of_a_file_is_its_filesystem() {
        let d = DeviceNumber::of_path(std::path::Path::new("/proc/self/stat")).unwrap();
        assert_eq!(d.to_string(), format!("{}:{}", d.major, d.minor));
    }
}
