//! A host-side harness for the cost of the virtio-blk device without a guest: it plays the
//! driver in guest memory (descriptor table, available ring, 16-byte headers), kicks the disk's
//! ioeventfd and waits on its irqfd, while the real `colo-io` thread serves the queue. Used by
//! `cargo bench -p colo-vmm --bench io_path`; outside the unit tests it is compiled only with the
//! `bench-harness` feature, so it is no part of the library the agent links.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{Disk, DiskConfig, IoThread};
use crate::vmm::devices::mmio_bus::MmioDevice;
use crate::vmm::vstate::memory::{self, MemoryOptions};

const DESC: u64 = 0x10000;
const AVAIL: u64 = 0x11000;
const USED: u64 = 0x12000;
const HEADERS: u64 = 0x20000;
const STATUS: u64 = 0x30000;
const DATA: u64 = 0x100000;
const QUEUE: u16 = 256;

/// Direction and pattern of the IO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Sequential reads.
    SeqRead,
    /// Sequential writes.
    SeqWrite,
    /// Random reads (block-aligned).
    RandRead,
    /// Random writes (block-aligned).
    RandWrite,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct DeviceBenchResult {
    /// Bytes moved.
    pub bytes: u64,
    /// Requests completed.
    pub ops: u64,
    /// Wall time.
    pub seconds: f64,
    /// CPU time of the `colo-io` thread.
    pub io_thread_cpu_seconds: f64,
}

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum DeviceBenchError {
    /// Setting up memory, the disk or the IO thread failed.
    #[error("device bench setup: {0}")]
    Setup(String),
    /// A request completed with a non-zero status.
    #[error("request failed with virtio-blk status {0}")]
    Status(u8),
}

fn setup<E: std::fmt::Display>(e: E) -> DeviceBenchError {
    DeviceBenchError::Setup(e.to_string())
}

fn w32(disk: &Disk, mem: &GuestMemoryMmap, off: u64, v: u32) {
    disk.mmio_write(off, &v.to_le_bytes(), mem);
}

/// Runs `ops` requests of `block` bytes with `depth` in flight against `file`.
pub fn run(
    file: &Path,
    pattern: Pattern,
    block: u32,
    depth: u16,
    ops: u64,
) -> Result<DeviceBenchResult, DeviceBenchError> {
    let depth = depth.clamp(1, QUEUE / 3);
    let mem = memory::create(64 << 20, MemoryOptions::default()).map_err(setup)?;
    let disk = Arc::new(
        Disk::open(
            0,
            DiskConfig {
                path: file.to_path_buf(),
                read_only: false,
                bw: 0,
                iops: 0,
            },
            0,
            5,
        )
        .map_err(setup)?,
    );
    let size = std::fs::metadata(file).map_err(setup)?.len();
    let blocks = size / u64::from(block);
    if blocks == 0 || u64::from(block) * u64::from(depth) > 48 << 20 {
        return Err(setup("file too small or blocks too large"));
    }
    // Driver initialisation, as a guest would do it.
    w32(&disk, &mem, 0x70, 3);
    w32(&disk, &mem, 0x24, 1);
    w32(&disk, &mem, 0x20, 1);
    w32(&disk, &mem, 0x70, 0xb);
    w32(&disk, &mem, 0x38, u32::from(QUEUE));
    w32(&disk, &mem, 0x80, DESC as u32);
    w32(&disk, &mem, 0x90, AVAIL as u32);
    w32(&disk, &mem, 0xa0, USED as u32);
    w32(&disk, &mem, 0x44, 1);
    w32(&disk, &mem, 0x70, 0xf);
    let write = matches!(pattern, Pattern::SeqWrite | Pattern::RandWrite);
    let wr = |v: u64, a: u64| mem.write_obj(v, GuestAddress(a)).map_err(setup);
    for s in 0..u64::from(depth) {
        let d = DESC + 48 * s;
        let (h, data, st) = (HEADERS + 16 * s, DATA + s * u64::from(block), STATUS + s);
        let head = 3 * s as u16;
        for (i, (addr, len, flags)) in [
            (h, 16u32, 1u16),
            (data, block, if write { 1 } else { 3 }),
            (st, 1, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let at = d + 16 * i as u64;
            wr(addr, at)?;
            mem.write_obj(len, GuestAddress(at + 8)).map_err(setup)?;
            mem.write_obj(flags, GuestAddress(at + 12)).map_err(setup)?;
            mem.write_obj(head + i as u16 + 1, GuestAddress(at + 14))
                .map_err(setup)?;
        }
        if write {
            mem.write_slice(&vec![0x5a; block as usize], GuestAddress(data))
                .map_err(setup)?;
        }
    }
    let io = IoThread::spawn(vec![disk.clone()], mem.clone(), None).map_err(setup)?;
    let cpu = || {
        std::fs::read_to_string(format!("/proc/self/task/{}/schedstat", io.tid))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_block = 0u64;
    let mut submit = |slot: u64, avail: &mut u16| -> Result<(), DeviceBenchError> {
        let b = match pattern {
            Pattern::SeqRead | Pattern::SeqWrite => {
                let b = next_block % blocks;
                next_block += 1;
                b
            }
            Pattern::RandRead | Pattern::RandWrite => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % blocks
            }
        };
        let sector = b * u64::from(block) / 512;
        mem.write_obj(u32::from(write), GuestAddress(HEADERS + 16 * slot))
            .map_err(setup)?;
        wr(sector, HEADERS + 16 * slot + 8)?;
        let ring = AVAIL + 4 + 2 * u64::from(*avail % QUEUE);
        mem.write_obj(3 * slot as u16, GuestAddress(ring))
            .map_err(setup)?;
        *avail = avail.wrapping_add(1);
        mem.write_obj(*avail, GuestAddress(AVAIL + 2))
            .map_err(setup)?;
        Ok(())
    };

    let (cpu0, t0) = (cpu(), Instant::now());
    let mut avail = 0u16;
    let mut used_seen = 0u16;
    let mut submitted = 0u64;
    let mut done = 0u64;
    for s in 0..u64::from(depth).min(ops) {
        submit(s, &mut avail)?;
        submitted += 1;
    }
    let _ = disk.notify.write(1);
    while done < ops {
        let used: u16 = mem.read_obj(GuestAddress(USED + 2)).map_err(setup)?;
        if used == used_seen {
            // Sleep until the device raises its interrupt (irqfd).
            let mut fds = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&disk.irq_event),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut fds, 1, 100) };
            let _ = disk.irq_event.read();
            continue;
        }
        let mut kicked = false;
        while used_seen != used {
            let elem = USED + 4 + 8 * u64::from(used_seen % QUEUE);
            let id: u32 = mem.read_obj(GuestAddress(elem)).map_err(setup)?;
            used_seen = used_seen.wrapping_add(1);
            let slot = u64::from(id / 3);
            let status: u8 = mem.read_obj(GuestAddress(STATUS + slot)).map_err(setup)?;
            if status != 0 {
                return Err(DeviceBenchError::Status(status));
            }
            done += 1;
            if submitted < ops {
                submit(slot, &mut avail)?;
                submitted += 1;
                kicked = true;
            }
        }
        if kicked {
            let _ = disk.notify.write(1);
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_s = cpu().saturating_sub(cpu0) as f64 / 1e9;
    io.stop();
    std::thread::sleep(Duration::from_millis(10));
    Ok(DeviceBenchResult {
        bytes: ops * u64::from(block),
        ops,
        seconds,
        io_thread_cpu_seconds: cpu_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_moves_data_through_the_real_io_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.img");
        std::fs::write(&path, vec![7u8; 4 << 20]).unwrap();
        let w = run(&path, Pattern::RandWrite, 4096, 4, 64).unwrap();
        assert_eq!((w.ops, w.bytes), (64, 64 * 4096));
        let r = run(&path, Pattern::SeqRead, 128 << 10, 8, 64).unwrap();
        assert_eq!(r.bytes, 64 * (128 << 10));
        let data = std::fs::read(&path).unwrap();
        assert!(data.contains(&0x5a), "random writes landed");
    }
}
