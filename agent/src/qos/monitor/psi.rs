//! Pressure stall information from the `total` counters (µs of stall since boot) of
//! `/proc/pressure/{cpu,memory,io}` or a v2 cgroup's `{cpu,memory,io}.pressure`.
//!
//! `avg10` is a 10 s average refreshed every 2 s and cannot drive a 50 ms loop; the deltas of
//! `total` between two ticks give the stall time of exactly that interval.

use std::io;
use std::path::{Path, PathBuf};

use super::MonitorError;
use crate::host::statfile::{StatFile, fields, lines, parse_u64};

/// The three PSI resources.
pub const RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

/// Stall totals of one resource in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PsiTotals {
    /// `some`: at least one task stalled.
    pub some: u64,
    /// `full`: every non-idle task stalled (0 where the kernel has no `full` line).
    pub full: u64,
}

/// Stall totals of the three resources in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PsiCounters {
    /// `cpu`.
    pub cpu: PsiTotals,
    /// `memory`.
    pub memory: PsiTotals,
    /// `io`.
    pub io: PsiTotals,
}

/// Parses a pressure file: `some avg10=.. avg60=.. avg300=.. total=N` and the `full` line.
pub fn parse(text: &[u8]) -> Option<PsiTotals> {
    let mut t = PsiTotals::default();
    let mut some = false;
    for l in lines(text) {
        let mut f = fields(l);
        let kind = f.next()?;
        let total = f
            .find_map(|x| x.strip_prefix(b"total="))
            .and_then(parse_u64)?;
        match kind {
            b"some" => {
                t.some = total;
                some = true;
            }
            b"full" => t.full = total,
            _ => {}
        }
    }
    some.then_some(t)
}

/// The pressure files of one scope (the system, or one v2 cgroup).
#[derive(Debug)]
pub struct PsiSource {
    files: [StatFile; 3],
}

/// Whether PSI is missing on this kernel (its files are absent or refuse reads).
fn psi_off(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

impl PsiSource {
    /// The system-wide files under `/proc/pressure` (or `root`, for tests).
    pub fn system(root: &Path) -> Result<Self, MonitorError> {
        Self::open(|r| root.join(r), true)
    }

    /// A v2 cgroup's `cpu.pressure`, `memory.pressure`, `io.pressure`.
    pub fn cgroup(dir: &Path) -> Result<Self, MonitorError> {
        Self::open(|r| dir.join(format!("{r}.pressure")), false)
    }

    fn open(path: impl Fn(&str) -> PathBuf, system: bool) -> Result<Self, MonitorError> {
        let open = |r: &str| -> Result<StatFile, MonitorError> {
            let p = path(r);
            let mut f = StatFile::open(&p).map_err(|e| psi_error(&p, e, system))?;
            // Kernels with PSI compiled in but disabled at boot refuse the read, not the open.
            f.read().map_err(|e| psi_error(&p, e, system))?;
            Ok(f)
        };
        Ok(Self {
            files: [
                open(RESOURCES[0])?,
                open(RESOURCES[1])?,
                open(RESOURCES[2])?,
            ],
        })
    }

    /// Reads the three totals.
    pub fn read(&mut self) -> Result<PsiCounters, MonitorError> {
        let mut out = [PsiTotals::default(); 3];
        for (f, o) in self.files.iter_mut().zip(out.iter_mut()) {
            let parsed = match f.read() {
                Ok(text) => parse(text),
                Err(e) => return Err(MonitorError::read(f.path(), e)),
            };
            *o = parsed.ok_or_else(|| MonitorError::read(f.path(), f.unexpected()))?;
        }
        Ok(PsiCounters {
            cpu: out[0],
            memory: out[1],
            io: out[2],
        })
    }
}

fn psi_error(path: &Path, e: io::Error, system: bool) -> MonitorError {
    if psi_off(&e) {
        MonitorError::PsiOff {
            path: path.to_path_buf(),
            fix: if system {
                "the kernel has PSI off: boot it with psi=1 (kernels built with \
                 CONFIG_PSI_DEFAULT_DISABLED need it) or build it with CONFIG_PSI=y; until then \
                 the loop runs on run delay and SLI only (set interference.psi.* to null to \
                 silence this)"
            } else {
                "this cgroup has no pressure files: the kernel has PSI off (boot with psi=1) or \
                 cgroup.pressure is 0; system-wide PSI is used instead"
            },
        }
    } else {
        MonitorError::read(path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_parsed_not_averages() {
        let t = b"some avg10=1.50 avg60=0.20 avg300=0.05 total=981082304\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=12\n";
        assert_eq!(
            parse(t),
            Some(PsiTotals {
                some: 981_082_304,
                full: 12
            })
        );
        // Old kernels have no `full` line for cpu.
        assert_eq!(
            parse(b"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"),
            Some(PsiTotals { some: 5, full: 0 })
        );
        assert_eq!(parse(b"garbage\n"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn missing_psi_names_the_boot_option() {
        let dir = tempfile::tempdir().unwrap();
        let e = PsiSource::system(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("psi=1"), "{msg}");
        assert!(msg.contains("cpu"), "{msg}");
    }

    #[test]
    fn the_system_files_read_when_present() {
        if !Path::new("/proc/pressure/cpu").exists() {
            eprintln!("SKIPPED: this kernel has no /proc/pressure");
            return;
        }
        let mut s = PsiSource::system(Path::new("/proc/pressure")).unwrap();
        let a = s.read().unwrap();
        let b = s.read().unwrap();
        assert!(b.cpu.some >= a.cpu.some);
        assert!(b.io.full >= a.io.full);
    }
}
