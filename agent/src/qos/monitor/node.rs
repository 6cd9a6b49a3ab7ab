//! Node-wide counters: CPU time (`/proc/stat`), memory (`/proc/meminfo`) and disks
//! (`/proc/diskstats`).

use std::io;
use std::path::Path;

use crate::host::statfile::{StatFile, fields, lines, meminfo_bytes, parse_u64};

/// Clock ticks per second of `/proc/stat` (USER_HZ).
fn user_hz() -> u64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
}

/// Node CPU time, ns, cumulative over all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Time not idle and not waiting for IO (steal excluded).
    pub busy_ns: u64,
    /// Time stolen by the hypervisor.
    pub steal_ns: u64,
    /// All time counted (busy, idle, iowait, steal).
    pub total_ns: u64,
    /// CPUs listed.
    pub cpus: u32,
}

/// `/proc/stat` reader.
#[derive(Debug)]
pub struct ProcStat {
    file: StatFile,
    ns_per_tick: u64,
}

impl ProcStat {
    /// Opens `/proc/stat` (or another file in its format, for tests).
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: StatFile::open(path)?,
            ns_per_tick: 1_000_000_000 / user_hz(),
        })
    }

    /// Reads the `cpu` line and counts the `cpuN` lines.
    pub fn read(&mut self) -> io::Result<CpuTimes> {
        let ns = self.ns_per_tick;
        let text = self.file.read()?;
        let mut t = CpuTimes::default();
        let mut seen = false;
        for l in lines(text) {
            if let Some(rest) = l.strip_prefix(b"cpu ") {
                // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
                // already inside user and nice.
                let mut v = [0u64; 8];
                for (slot, f) in v.iter_mut().zip(fields(rest)) {
                    *slot = parse_u64(f).unwrap_or(0);
                }
                let [user, nice, system, idle, iowait, irq, softirq, steal] = v;
                t.busy_ns = (user + nice + system + irq + softirq) * ns;
                t.steal_ns = steal * ns;
                t.total_ns = (user + nice + system + idle + iowait + irq + softirq + steal) * ns;
                seen = true;
            } else if l.starts_with(b"cpu") {
                t.cpus += 1;
            } else if seen {
                break;
            }
        }
        if !seen {
            return Err(self.file.unexpected());
        }
        Ok(t)
    }
}

/// Node memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`.
    pub available: u64,
}

/// `/proc/meminfo` reader.
#[derive(Debug)]
pub struct ProcMeminfo {
    file: StatFile,
}

impl ProcMeminfo {
    /// Opens `/proc/meminfo`.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: StatFile::open(path)?,
        })
    }

    /// Reads `MemTotal` and `MemAvailable`.
    pub fn read(&mut self) -> io::Result<MemInfo> {
        let text = self.file.read()?;
        match (
            meminfo_bytes(text, b"MemTotal"),
            meminfo_bytes(text, b"MemAvailable"),
        ) {
            (Some(total), Some(available)) => Ok(MemInfo { total, available }),
            _ => Err(self.file.unexpected()),
        }
    }
}

/// Counters of one disk (cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskCounters {
    /// Reads and writes completed.
    pub ios: u64,
    /// Time spent by completed reads and writes (queueing included), ms.
    pub io_ms: u64,
    /// Time the device had IO in flight, ms.
    pub busy_ms: u64,
}

/// `/proc/diskstats` reader for a set of devices.
#[derive(Debug)]
pub struct DiskStats {
    file: StatFile,
}

impl DiskStats {
    /// Opens `/proc/diskstats`.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: StatFile::open(path)?,
        })
    }

    /// Fills `out[i]` with the counters of `devices[i]` (zero when the device is not listed).
    pub fn read(&mut self, devices: &[(u32, u32)], out: &mut [DiskCounters]) -> io::Result<()> {
        out.iter_mut().for_each(|c| *c = DiskCounters::default());
        if devices.is_empty() {
            return Ok(());
        }
        let text = self.file.read()?;
        for l in lines(text) {
            // major minor name reads merged sectors ms_read writes merged sectors ms_write
            // in_flight ms_io weighted_ms ...
            let mut f = fields(l);
            let (Some(maj), Some(min)) =
                (f.next().and_then(parse_u64), f.next().and_then(parse_u64))
            else {
                continue;
            };
            let Some(i) = devices
                .iter()
                .position(|&(a, b)| u64::from(a) == maj && u64::from(b) == min)
            else {
                continue;
            };
            let mut v = [0u64; 11];
            for (slot, x) in v.iter_mut().zip(f.skip(1)) {
                *slot = parse_u64(x).unwrap_or(0);
            }
            out[i] = DiskCounters {
                ios: v[0] + v[4],
                io_ms: v[3] + v[7],
                busy_ms: v[9],
            };
        }
        Ok(())
    }
}

/// The whole disk holding a block device (`/sys/dev/block/M:m/..`), itself for a whole disk:
/// cgroup IO throttles accept only whole disks.
pub fn whole_disk(dev: (u32, u32)) -> (u32, u32) {
    let sys = format!("/sys/dev/block/{}:{}", dev.0, dev.1);
    let p = Path::new(&sys);
    if !p.join("partition").exists() {
        return dev;
    }
    std::fs::read_to_string(p.join("../dev"))
        .ok()
        .and_then(|t| crate::host::cgroup::counters::parse_dev(t.trim().as_bytes()))
        .unwrap_or(dev)
}

/// The device holding `path`'s file system, as its whole disk.
pub fn disk_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let d = (libc::major(dev), libc::minor(dev));
    // Virtual file systems (tmpfs, overlay) have major 0: no disk.
    (d.0 != 0).then(|| whole_disk(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_steal_and_cpus() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stat");
        std::fs::write(&p, "cpu  100 0 50 800 10 5 5 30 0 0\ncpu0 50 0 25 400 5 2 2 15 0 0\ncpu1 50 0 25 400 5 3 3 15 0 0\nintr 1\n").unwrap();
        let mut s = ProcStat::open(&p).unwrap();
        let t = s.read().unwrap();
        let tick = 1_000_000_000 / user_hz();
        assert_eq!(t.busy_ns, 160 * tick);
        assert_eq!(t.steal_ns, 30 * tick);
        assert_eq!(t.total_ns, 1000 * tick);
        assert_eq!(t.cpus, 2);
        let real = ProcStat::open(Path::new("/proc/stat"))
            .unwrap()
            .read()
            .unwrap();
        assert!(real.cpus >= 1 && real.busy_ns > 0);
    }

    #[test]
    fn meminfo_and_diskstats() {
        let mut m = ProcMeminfo::open(Path::new("/proc/meminfo")).unwrap();
        let mi = m.read().unwrap();
        assert!(mi.total > mi.available && mi.available > 0);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("diskstats");
        std::fs::write(&p, "   8       0 sda 100 0 800 40 200 0 1600 60 0 90 100 0 0 0 0\n   8       1 sda1 1 0 8 1 2 0 16 1 0 1 2\n").unwrap();
        let mut ds = DiskStats::open(&p).unwrap();
        let mut out = [DiskCounters::default(); 2];
        ds.read(&[(8, 0), (9, 9)], &mut out).unwrap();
        assert_eq!(
            out[0],
            DiskCounters {
                ios: 300,
                io_ms: 100,
                busy_ms: 90
            }
        );
        assert_eq!(out[1], DiskCounters::default());
    }

    #[test]
    fn the_root_file_system_has_a_disk_or_none() {
        // Containers put / on overlay (no disk): both answers are valid; a disk is whole.
        if let Some(d) = disk_of(Path::new("/")) {
            assert!(!Path::new(&format!("/sys/dev/block/{}:{}/partition", d.0, d.1)).exists());
        }
    }
}
