//! Counters of one cgroup, read from files kept open: CPU usage and throttling, memory, IO.
//! v1 and v2 dialects; the caller names the directories (on v1 each controller has its own).
//! The one place cgroup counters are parsed: the QoS loop keeps these readers open, and
//! [`super::CgroupNode::stats`] opens them for a single read.

use std::io;
use std::path::Path;

use crate::host::statfile::{StatFile, fields, keyed, lines, parse_u64};

/// CPU counters of a cgroup (cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuCounters {
    /// CPU time used by the cgroup and its descendants, ns.
    pub usage_ns: u64,
    /// Time its tasks were throttled by the CFS bandwidth limit, ns.
    pub throttled_ns: u64,
    /// Periods in which it was throttled.
    pub nr_throttled: u64,
}

/// CPU usage and throttling of one cgroup.
#[derive(Debug)]
pub enum CgroupCpu {
    /// v1: `cpuacct.usage` and the cpu hierarchy's `cpu.stat`.
    V1 {
        /// `cpuacct.usage`.
        usage: StatFile,
        /// `cpu.stat`, when the cpu hierarchy is there.
        stat: Option<StatFile>,
    },
    /// v1, the cpu hierarchy's `cpu.stat` alone (throttling; usage reads as 0).
    V1Throttling {
        /// `cpu.stat`.
        stat: StatFile,
    },
    /// v2: `cpu.stat` (`usage_usec`, `throttled_usec`, `nr_throttled`).
    V2 {
        /// `cpu.stat`.
        stat: StatFile,
    },
}

impl CgroupCpu {
    /// v1, from the cgroup's directories in the cpuacct and cpu hierarchies.
    pub fn v1(cpuacct: &Path, cpu: Option<&Path>) -> io::Result<Self> {
        Ok(Self::V1 {
            usage: StatFile::open(cpuacct.join("cpuacct.usage"))?,
            stat: cpu.and_then(|c| StatFile::open(c.join("cpu.stat")).ok()),
        })
    }

    /// v1 throttling only: the cpu hierarchy's `cpu.stat`, no `cpuacct.usage` (its
    /// [`read`](Self::read) reports `usage_ns` 0). For a cgroup whose usage is counted by its
    /// parent (a VM's `vcpu` child), this saves a read per refresh.
    pub fn v1_throttling(cpu: &Path) -> io::Result<Self> {
        Ok(Self::V1Throttling {
            stat: StatFile::open(cpu.join("cpu.stat"))?,
        })
    }

    /// v2, from the cgroup's directory.
    pub fn v2(dir: &Path) -> io::Result<Self> {
        Ok(Self::V2 {
            stat: StatFile::open(dir.join("cpu.stat"))?,
        })
    }

    /// Reads the counters.
    pub fn read(&mut self) -> io::Result<CpuCounters> {
        let mut c = CpuCounters::default();
        match self {
            Self::V1 { usage, stat } => {
                c.usage_ns = usage.read_u64()?.unwrap_or(0);
                if let Some(s) = stat {
                    let t = s.read()?;
                    c.throttled_ns = keyed(t, b"throttled_time").unwrap_or(0);
                    c.nr_throttled = keyed(t, b"nr_throttled").unwrap_or(0);
                }
            }
            Self::V1Throttling { stat } => {
                let t = stat.read()?;
                c.throttled_ns = keyed(t, b"throttled_time").unwrap_or(0);
                c.nr_throttled = keyed(t, b"nr_throttled").unwrap_or(0);
            }
            Self::V2 { stat } => {
                let t = stat.read()?;
                c.usage_ns = keyed(t, b"usage_usec").unwrap_or(0).saturating_mul(1000);
                c.throttled_ns = keyed(t, b"throttled_usec")
                    .unwrap_or(0)
                    .saturating_mul(1000);
                c.nr_throttled = keyed(t, b"nr_throttled").unwrap_or(0);
            }
        }
        Ok(c)
    }
}

/// Memory counters of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryCounters {
    /// Charged bytes (page cache included).
    pub usage: u64,
    /// Usage minus inactive file pages: what it cannot easily give back (kubelet's working set).
    pub working_set: u64,
}

/// Memory use of one cgroup.
#[derive(Debug)]
pub struct CgroupMemory {
    usage: StatFile,
    /// `memory.stat`; `None` when opened for the charge alone.
    stat: Option<StatFile>,
    v2: bool,
}

impl CgroupMemory {
    /// From the cgroup's directory in the memory hierarchy (v1) or its directory (v2).
    pub fn open(dir: &Path, v2: bool) -> io::Result<Self> {
        let usage = if v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        Ok(Self {
            usage: StatFile::open(dir.join(usage))?,
            stat: Some(StatFile::open(dir.join("memory.stat"))?),
            v2,
        })
    }

    /// For [`read_usage`](Self::read_usage) alone: `memory.stat` is not opened (a
    /// [`read`](Self::read) reports the whole charge as the working set).
    pub fn open_usage(dir: &Path, v2: bool) -> io::Result<Self> {
        let usage = if v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        Ok(Self {
            usage: StatFile::open(dir.join(usage))?,
            stat: None,
            v2,
        })
    }

    /// Reads the charge alone (`memory.current` / `memory.usage_in_bytes`), without
    /// `memory.stat` (long, and on v1 summed over the hierarchy at every read).
    pub fn read_usage(&mut self) -> io::Result<u64> {
        Ok(self.usage.read_u64()?.unwrap_or(0))
    }

    /// Reads the counters.
    pub fn read(&mut self) -> io::Result<MemoryCounters> {
        let usage = self.usage.read_u64()?.unwrap_or(0);
        let key: &[u8] = if self.v2 {
            b"inactive_file"
        } else {
            b"total_inactive_file"
        };
        let inactive = match &mut self.stat {
            Some(stat) => keyed(stat.read()?, key).unwrap_or(0),
            None => 0,
        };
        Ok(MemoryCounters {
            usage,
            working_set: usage.saturating_sub(inactive),
        })
    }
}

/// IO counters of a cgroup (cumulative, all devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoCounters {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Operations (reads + writes).
    pub ios: u64,
}

/// IO use of one cgroup. On v1 only direct IO is charged to the writer (buffered writeback is
/// not), which is why VM disks are opened with `O_DIRECT`.
#[derive(Debug)]
pub enum CgroupIo {
    /// v1: `blkio.throttle.io_service_bytes_recursive` and `blkio.throttle.io_serviced_recursive`.
    V1 {
        /// Bytes.
        bytes: StatFile,
        /// Operations.
        ios: StatFile,
    },
    /// v2: `io.stat`.
    V2 {
        /// `io.stat`.
        stat: StatFile,
    },
}

impl CgroupIo {
    /// From the cgroup's directory in the blkio hierarchy (v1) or its directory (v2).
    pub fn open(dir: &Path, v2: bool) -> io::Result<Self> {
        if v2 {
            return Ok(Self::V2 {
                stat: StatFile::open(dir.join("io.stat"))?,
            });
        }
        Ok(Self::V1 {
            bytes: StatFile::open(dir.join("blkio.throttle.io_service_bytes_recursive"))?,
            ios: StatFile::open(dir.join("blkio.throttle.io_serviced_recursive"))?,
        })
    }

    /// Reads the counters, summed over devices.
    pub fn read(&mut self) -> io::Result<IoCounters> {
        let mut c = IoCounters::default();
        match self {
            Self::V1 { bytes, ios } => {
                let (r, w) = v1_read_write(bytes.read()?);
                (c.read_bytes, c.write_bytes) = (r, w);
                let (r, w) = v1_read_write(ios.read()?);
                c.ios = r + w;
            }
            Self::V2 { stat } => {
                for_each_v2_device(stat.read()?, |_, k, v| match k {
                    b"rbytes" => c.read_bytes += v,
                    b"wbytes" => c.write_bytes += v,
                    b"rios" | b"wios" => c.ios += v,
                    _ => {}
                });
            }
        }
        Ok(c)
    }

    /// The devices (`major:minor`) this cgroup has done IO on.
    pub fn devices(&mut self, out: &mut Vec<(u32, u32)>) -> io::Result<()> {
        match self {
            Self::V1 { ios, .. } => {
                for l in lines(ios.read()?) {
                    let mut f = fields(l);
                    let (Some(dev), Some(op), Some(n)) = (f.next(), f.next(), f.next()) else {
                        continue;
                    };
                    if op == b"Total" && parse_u64(n).unwrap_or(0) > 0 {
                        push_device(out, dev);
                    }
                }
            }
            Self::V2 { stat } => {
                for_each_v2_device(stat.read()?, |dev, k, v| {
                    if (k == b"rios" || k == b"wios") && v > 0 {
                        push_device(out, dev);
                    }
                });
            }
        }
        Ok(())
    }
}

fn push_device(out: &mut Vec<(u32, u32)>, dev: &[u8]) {
    if let Some(d) = parse_dev(dev)
        && !out.contains(&d)
    {
        out.push(d);
    }
}

/// Parses `major:minor`.
pub fn parse_dev(s: &[u8]) -> Option<(u32, u32)> {
    let i = s.iter().position(|&c| c == b':')?;
    let major = u32::try_from(parse_u64(&s[..i])?).ok()?;
    let minor = u32::try_from(parse_u64(&s[i + 1..])?).ok()?;
    Some((major, minor))
}

/// Sums the `Read` and `Write` lines of a v1 blkio file (`MAJ:MIN Read N`).
fn v1_read_write(text: &[u8]) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in lines(text) {
        let mut f = fields(l);
        let (Some(_dev), Some(op), Some(n)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let n = parse_u64(n).unwrap_or(0);
        match op {
            b"Read" => r += n,
            b"Write" => w += n,
            _ => {}
        }
    }
    (r, w)
}

/// Calls `f(device, key, value)` for each `key=value` of each v2 `io.stat` line.
fn for_each_v2_device(text: &[u8], mut f: impl FnMut(&[u8], &[u8], u64)) {
    for l in lines(text) {
        let mut it = fields(l);
        let Some(dev) = it.next() else { continue };
        for kv in it {
            if let Some(i) = kv.iter().position(|&c| c == b'=')
                && let Some(v) = parse_u64(&kv[i + 1..])
            {
                f(dev, &kv[..i], v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in files {
            std::fs::write(d.path().join(n), c).unwrap();
        }
        d
    }

    #[test]
    fn v1_cpu_and_v2_cpu() {
        let a = dir_with(&[
            ("cpuacct.usage", "123456\n"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 4\nthrottled_time 999\n",
            ),
        ]);
        let mut c = CgroupCpu::v1(a.path(), Some(a.path())).unwrap();
        assert_eq!(
            c.read().unwrap(),
            CpuCounters {
                usage_ns: 123_456,
                throttled_ns: 999,
                nr_throttled: 4
            }
        );
        // Usage alone (no cpu hierarchy), throttling alone (no cpuacct.usage).
        let mut u = CgroupCpu::v1(a.path(), None).unwrap();
        assert_eq!(u.read().unwrap().usage_ns, 123_456);
        assert_eq!(u.read().unwrap().throttled_ns, 0);
        let mut t = CgroupCpu::v1_throttling(a.path()).unwrap();
        assert_eq!(
            t.read().unwrap(),
            CpuCounters {
                usage_ns: 0,
                throttled_ns: 999,
                nr_throttled: 4
            }
        );
        let b = dir_with(&[(
            "cpu.stat",
            "usage_usec 5\nuser_usec 3\nnr_periods 1\nnr_throttled 2\nthrottled_usec 7\n",
        )]);
        let mut c = CgroupCpu::v2(b.path()).unwrap();
        assert_eq!(
            c.read().unwrap(),
            CpuCounters {
                usage_ns: 5000,
                throttled_ns: 7000,
                nr_throttled: 2
            }
        );
    }

    #[test]
    fn memory_working_set() {
        let a = dir_with(&[
            ("memory.usage_in_bytes", "1000\n"),
            (
                "memory.stat",
                "cache 10\ninactive_file 1\ntotal_inactive_file 300\n",
            ),
        ]);
        let mut m = CgroupMemory::open(a.path(), false).unwrap();
        assert_eq!(
            m.read().unwrap(),
            MemoryCounters {
                usage: 1000,
                working_set: 700
            }
        );
        let b = dir_with(&[
            ("memory.current", "1000\n"),
            ("memory.stat", "anon 5\ninactive_file 100\n"),
        ]);
        let mut m = CgroupMemory::open(b.path(), true).unwrap();
        assert_eq!(m.read().unwrap().working_set, 900);
        assert_eq!(m.read_usage().unwrap(), 1000);
    }

    #[test]
    fn io_counters_and_devices() {
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\n8:16 Read 0\n8:16 Write 0\n8:16 Total 0\nTotal 12288\n";
        let v1_ios = "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\n8:16 Read 0\n8:16 Total 0\nTotal 3\n";
        let a = dir_with(&[
            ("blkio.throttle.io_service_bytes_recursive", v1),
            ("blkio.throttle.io_serviced_recursive", v1_ios),
        ]);
        let mut io = CgroupIo::open(a.path(), false).unwrap();
        assert_eq!(
            io.read().unwrap(),
            IoCounters {
                read_bytes: 4096,
                write_bytes: 8192,
                ios: 3
            }
        );
        let mut devs = Vec::new();
        io.devices(&mut devs).unwrap();
        assert_eq!(devs, vec![(8, 0)]);
        let b = dir_with(&[(
            "io.stat",
            "259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n",
        )]);
        let mut io = CgroupIo::open(b.path(), true).unwrap();
        assert_eq!(
            io.read().unwrap(),
            IoCounters {
                read_bytes: 10,
                write_bytes: 20,
                ios: 3
            }
        );
        devs.clear();
        io.devices(&mut devs).unwrap();
        assert_eq!(devs, vec![(259, 0)]);
        assert_eq!(parse_dev(b"253:17"), Some((253, 17)));
        assert_eq!(parse_dev(b"x:1"), None);
    }

    #[test]
    fn stat_parsers() {
        let cpu = "usage_usec 1200\nuser_usec 1000\nthrottled_usec 55\n";
        assert_eq!(keyed(cpu.as_bytes(), b"usage_usec"), Some(1200));
        assert_eq!(keyed(cpu.as_bytes(), b"throttled_usec"), Some(55));
        assert_eq!(keyed(cpu.as_bytes(), b"nope"), None);
        let io = "8:0 rbytes=100 wbytes=20 rios=1 wios=2\n259:0 rbytes=1 wbytes=2 dbytes=0\n";
        let d = dir_with(&[("io.stat", io)]);
        let c = CgroupIo::open(d.path(), true).unwrap().read().unwrap();
        assert_eq!((c.read_bytes, c.write_bytes), (101, 22));
        let blk = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Total 4608\nTotal 4608\n";
        let d = dir_with(&[
            ("blkio.throttle.io_service_bytes_recursive", blk),
            ("blkio.throttle.io_serviced_recursive", blk),
        ]);
        let c = CgroupIo::open(d.path(), false).unwrap().read().unwrap();
        assert_eq!((c.read_bytes, c.write_bytes), (4096, 512));
    }
}
