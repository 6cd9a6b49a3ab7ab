//! The running QEMU as the control socket and the main thread see it: pause and resume (QMP
//! `stop`/`cont`), the hold before the channel's first client, how the stand-in itself asked it
//! to end, and `stats` filled from what can be measured honestly (thread CPU from
//! `/proc/<qemu>/task/<tid>/schedstat`, resident guest RAM from QEMU's smaps, disk counters
//! from `query-blockstats`); the fields QEMU has no counterpart for stay zero.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use colo_vmm::control::{DiskStats, ExitCounts, MemoryStats, Stats, VcpuStats, VmState};
use serde_json::json;

use crate::output::Log;
use crate::qemu;
use crate::qmp::Qmp;

/// An end the stand-in asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The `shutdown` control request.
    Shutdown,
    /// SIGTERM or SIGINT to the stand-in.
    Signal(&'static str),
}

/// What ends QEMU and who asked; shared with the signal thread before the VM exists.
#[derive(Debug, Default)]
pub struct Ending {
    asked: Mutex<Option<Asked>>,
    /// QEMU's pid while it has not been reaped (so a signal never reaches a reused pid).
    qemu: Mutex<Option<u32>>,
}

impl Ending {
    /// Records `why` (the first one counts) and tells QEMU to end (SIGTERM: QEMU quits cleanly).
    pub fn ask(&self, why: Asked) {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.signal_qemu();
    }

    /// What was asked, if anything.
    pub fn asked(&self) -> Option<Asked> {
        *self.asked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// QEMU runs as `pid` (`None` once it has exited and before it is reaped). An end asked for
    /// before QEMU started reaches it now.
    pub fn set_qemu(&self, pid: Option<u32>) {
        *self.qemu.lock().unwrap_or_else(|p| p.into_inner()) = pid;
        if pid.is_some() && self.asked().is_some() {
            self.signal_qemu();
        }
    }

    fn signal_qemu(&self) {
        let qemu = self.qemu.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pid) = *qemu
            && let Ok(pid) = libc::pid_t::try_from(pid)
        {
            // SAFETY: kill has no memory preconditions; `pid` is our unreaped child (the lock
            // keeps the main thread from reaping it meanwhile).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// QEMU under control.
#[derive(Debug)]
pub struct Vm {
    qmp: Mutex<Control>,
    ending: Arc<Ending>,
    log: Arc<Log>,
    qemu_pid: u32,
    started: Instant,
    memory_mib: u64,
    disks: Vec<PathBuf>,
    vcpu_tids: Vec<u32>,
    quitting: AtomicBool,
}

#[derive(Debug)]
struct Control {
    qmp: Qmp,
    /// Paused by the `pause` control request.
    paused: bool,
    /// Held before the channel's first client (QEMU's virtconsole drops what no client reads).
    held: bool,
}

/// What a [`Vm`] is made of.
#[derive(Debug)]
pub struct VmParts {
    /// The QMP connection.
    pub qmp: Qmp,
    /// Shared with the signal thread.
    pub ending: Arc<Ending>,
    /// The log.
    pub log: Arc<Log>,
    /// QEMU's pid.
    pub qemu_pid: u32,
    /// When the stand-in started.
    pub started: Instant,
    /// Guest RAM.
    pub memory_mib: u64,
    /// The disks' paths, in `--disk` order.
    pub disks: Vec<PathBuf>,
    /// QEMU's vCPU threads, vCPU 0 first.
    pub vcpu_tids: Vec<u32>,
}

impl Vm {
    /// The VM, held (QEMU runs with `-S`) until [`Vm::release_hold`].
    pub fn new(p: VmParts) -> Self {
        Self {
            qmp: Mutex::new(Control {
                qmp: p.qmp,
                paused: false,
                held: true,
            }),
            ending: p.ending,
            log: p.log,
            qemu_pid: p.qemu_pid,
            started: p.started,
            memory_mib: p.memory_mib,
            disks: p.disks,
            vcpu_tids: p.vcpu_tids,
            quitting: AtomicBool::new(false),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.qmp.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the vCPUs (QMP `stop` returns once they have stopped).
    pub fn pause(&self) -> Result<(), String> {
        let mut c = self.control();
        c.paused = true;
        c.qmp
            .execute("stop", None)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Lets them run again (unless still held for the channel).
    pub fn resume(&self) -> Result<(), String> {
        let mut c = self.control();
        c.paused = false;
        if c.held {
            return Ok(());
        }
        c.qmp
            .execute("cont", None)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Whether the guest is still held for the channel's first client.
    pub fn held(&self) -> bool {
        self.control().held
    }

    /// Starts the guest (unless paused meanwhile, then `resume` starts it).
    pub fn release_hold(&self) -> Result<(), String> {
        let mut c = self.control();
        c.held = false;
        if c.paused {
            return Ok(());
        }
        c.qmp
            .execute("cont", None)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Whether a client is connected to the `--channel` socket (QEMU names a socket without
    /// one `disconnected:...` in `query-chardev`).
    pub fn channel_connected(&self) -> Result<bool, String> {
        let list = self
            .control()
            .qmp
            .execute("query-chardev", None)
            .map_err(|e| e.to_string())?;
        let chardev = list
            .as_array()
            .and_then(|l| l.iter().find(|c| c["label"] == qemu::CHANNEL_CHARDEV))
            .ok_or("QEMU lists no channel chardev")?;
        Ok(!chardev["filename"]
            .as_str()
            .unwrap_or("disconnected")
            .starts_with("disconnected"))
    }

    /// Ends the VM for the `shutdown` request: QMP `quit`, or SIGTERM when QMP fails.
    pub fn shutdown(&self) {
        if self.quitting.swap(true, Ordering::SeqCst) {
            return;
        }
        self.ending
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(Asked::Shutdown);
        if let Err(e) = self.control().qmp.execute("quit", None) {
            self.log
                .say(&format!("QMP quit failed ({e}); sending QEMU SIGTERM"));
            self.ending.signal_qemu();
        }
    }

    /// The events QEMU sent, read to the end (once QEMU has exited).
    pub fn drain_events(&self) -> Vec<serde_json::Value> {
        self.control().qmp.drain_events()
    }

    /// `stats`, as far as QEMU lets it be measured.
    pub fn stats(&self) -> Stats {
        let paused = self.control().paused;
        let vcpus = self
            .vcpu_tids
            .iter()
            .zip(0u32..)
            .map(|(&tid, index)| VcpuStats {
                index,
                tid,
                cpu_ns: thread_cpu_ns(self.qemu_pid, tid),
            })
            .collect();
        Stats {
            state: if paused {
                VmState::Paused
            } else {
                VmState::Running
            },
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            vcpus,
            io_tid: None,
            exits: ExitCounts::default(),
            memory: MemoryStats {
                guest_bytes: self.memory_mib << 20,
                resident_bytes: guest_resident_bytes(self.qemu_pid, self.memory_mib << 20),
            },
            progress: 0,
            disks: self.disk_stats(),
            dropped: self.log.dropped(),
        }
    }

    fn disk_stats(&self) -> Vec<DiskStats> {
        let blockstats = self
            .control()
            .qmp
            .execute("query-blockstats", Some(json!({})))
            .unwrap_or_default();
        let by_id = |id: &str| {
            blockstats
                .as_array()
                .and_then(|l| l.iter().find(|b| b["device"] == id))
                .map(|b| b["stats"].clone())
                .unwrap_or_default()
        };
        self.disks
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let s = by_id(&qemu::drive_id(i));
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                DiskStats {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    path: path.display().to_string(),
                    read_bytes: n("rd_bytes"),
                    write_bytes: n("wr_bytes"),
                    ops: n("rd_operations") + n("wr_operations") + n("flush_operations"),
                    bw: 0,
                    iops: 0,
                }
            })
            .collect()
    }
}

/// CPU time of QEMU's thread `tid`: the first field of its schedstat, as colo-vmm reports it.
fn thread_cpu_ns(pid: u32, tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident bytes of the guest's RAM: the Rss of QEMU's mapping exactly the guest's size.
fn guest_resident_bytes(pid: u32, guest_bytes: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .map(|s| resident_of_mapping(&s, guest_bytes >> 10))
        .unwrap_or(0)
}

fn resident_of_mapping(smaps: &str, size_kib: u64) -> u64 {
    let field = |line: &str, key: &str| -> Option<u64> {
        line.strip_prefix(key)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    };
    let mut size = None;
    for line in smaps.lines() {
        if let Some(s) = field(line, "Size:") {
            size = Some(s);
        } else if let Some(rss) = field(line, "Rss:")
            && size == Some(size_kib)
        {
            return rss << 10;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_ram_mapping_is_the_one_of_its_size() {
        let smaps = "55d0-55e0 r-xp 0 08:01 5 /usr/bin/qemu\nSize:  64 kB\nRss:  60 kB\n\
                     7fee-7fef rw-p 0 00:00 0\nSize:  262144 kB\nKernelPageSize: 4 kB\n\
                     Rss:  1024 kB\n";
        assert_eq!(resident_of_mapping(smaps, 262_144), 1024 << 10);
        assert_eq!(resident_of_mapping(smaps, 128), 0);
    }
}
