//! The virtio-blk device against a guest the fuzzer writes (`fuzz/fuzz_targets/virtio_blk.rs`):
//! a 64 KiB guest memory holding whatever descriptor table, rings, headers and buffers the
//! input says, a queue placed and sized by the input, and [`Disk::process_queue`], the function
//! the `colo-io` thread runs, serving it against a 32 KiB disk. Outside the unit tests it is
//! compiled only with the `fuzzing` feature, so it is no part of the library the agent links.
//!
//! Input layout: `[queue size: u16][desc: u16][avail: u16][used: u16][flags: u8][memory...]`,
//! little-endian; the rest of the input is guest memory from address 0. Flag bit 0 makes the
//! disk read-only, bit 1 limits it to one operation per second (the throttled path).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::OnceLock;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{Disk, DiskConfig, QueueState};
use crate::vmm::devices::mmio_bus::MmioDevice;
use crate::vmm::devices::virtio::status;

/// Guest memory of every run.
pub const MEM_BYTES: usize = 64 << 10;
/// Sectors of the disk.
const DISK_SECTORS: i64 = 64;

/// What one run left behind, for the target's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the device asked for a reset (DEVICE_NEEDS_RESET).
    pub needs_reset: bool,
    /// Whether the queue became usable (the driver's setup was accepted).
    pub activated: bool,
    /// The used ring's index after processing.
    pub used_idx: u16,
    /// What the last `process_queue` call returned.
    pub throttled: bool,
}

/// The backing file: a memfd, made once per process (its contents carry over between runs,
/// which the device must cope with anyway).
fn backing() -> &'static File {
    static FILE: OnceLock<File> = OnceLock::new();
    FILE.get_or_init(|| {
        // SAFETY: a NUL-terminated name and no flags; the result is checked before use.
        let fd = unsafe { libc::memfd_create(c"colo-fuzz-disk".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        // SAFETY: ftruncate on the descriptor `file` owns.
        let rc = unsafe { libc::ftruncate(file.as_raw_fd(), DISK_SECTORS * 512) };
        assert_eq!(rc, 0, "ftruncate: {}", std::io::Error::last_os_error());
        file
    })
}

fn w32(disk: &Disk, mem: &GuestMemoryMmap, off: u64, v: u32) {
    disk.mmio_write(off, &v.to_le_bytes(), mem);
}

/// The little-endian `u16` at `i` of the input (zeros past its end).
pub(crate) fn u16_at(data: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([
        data.get(i).copied().unwrap_or(0),
        data.get(i + 1).copied().unwrap_or(0),
    ])
}

/// Sets up a device and a guest from `data` (layout in the module doc) and serves the queue.
pub fn run(data: &[u8]) -> Outcome {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_BYTES)]).expect("guest memory");
    let flags = data.get(8).copied().unwrap_or(0);
    let image = data.get(9..).unwrap_or_default();
    let image = &image[..image.len().min(MEM_BYTES)];
    mem.write_slice(image, GuestAddress(0)).expect("image fits");
    let config = DiskConfig {
        path: format!("/proc/self/fd/{}", backing().as_raw_fd()).into(),
        read_only: flags & 1 != 0,
        bw: 0,
        iops: u64::from(flags & 2 != 0),
    };
    let disk = Disk::open(0, config, 0, 5).expect("the memfd opens");
    // The Linux driver's setup sequence (virtio 1.x §3.1.1), with the queue where the input says.
    let ack_driver = status::ACKNOWLEDGE | status::DRIVER;
    w32(&disk, &mem, 0x70, ack_driver);
    w32(&disk, &mem, 0x24, 1);
    w32(&disk, &mem, 0x20, 1);
    w32(&disk, &mem, 0x70, ack_driver | status::FEATURES_OK);
    w32(&disk, &mem, 0x38, u32::from(u16_at(data, 0)));
    w32(&disk, &mem, 0x80, u32::from(u16_at(data, 2)));
    w32(&disk, &mem, 0x90, u32::from(u16_at(data, 4)));
    w32(&disk, &mem, 0xa0, u32::from(u16_at(data, 6)));
    w32(&disk, &mem, 0x44, 1);
    w32(
        &disk,
        &mem,
        0x70,
        ack_driver | status::FEATURES_OK | status::DRIVER_OK,
    );
    let activated = disk.transport().is_active();
    // Twice, as a second notification would: the second call must find nothing new to do.
    let mut state = disk.process_queue(&mem);
    if state == QueueState::Idle {
        state = disk.process_queue(&mem);
    }
    let t = disk.transport();
    let mut st = [0u8; 4];
    t.read(0x70, &mut st);
    let used_idx = mem
        .read_obj::<u16>(GuestAddress(u64::from(u16_at(data, 6)) + 2))
        .unwrap_or(0);
    Outcome {
        needs_reset: u32::from_le_bytes(st) & status::DEVICE_NEEDS_RESET != 0,
        activated,
        used_idx,
        throttled: matches!(state, QueueState::Throttled(_)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESC: u16 = 0x1000;
    const AVAIL: u16 = 0x2000;
    const USED: u16 = 0x3000;

    /// An input with a 16-entry queue whose descriptor 0.. hold `descs`, one chain available.
    fn input(descs: &[(u64, u32, u16, u16)], extra: &[(u64, &[u8])]) -> Vec<u8> {
        let mut mem = vec![0u8; 0x8000];
        for (i, (addr, len, flags, next)) in descs.iter().enumerate() {
            let at = usize::from(DESC) + 16 * i;
            mem[at..at + 8].copy_from_slice(&addr.to_le_bytes());
            mem[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
            mem[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
            mem[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
        }
        let avail = usize::from(AVAIL);
        mem[avail + 2..avail + 4].copy_from_slice(&1u16.to_le_bytes());
        for (at, bytes) in extra {
            let at = *at as usize;
            mem[at..at + bytes.len()].copy_from_slice(bytes);
        }
        let mut data = Vec::new();
        for v in [16, DESC, AVAIL, USED] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        data.push(0);
        data.extend_from_slice(&mem);
        data
    }

    #[test]
    fn a_well_formed_read_completes() {
        let header: &[u8] = &[0; 16]; // VIRTIO_BLK_T_IN, sector 0
        let d = input(
            &[(0x4000, 16, 1, 1), (0x5000, 512, 3, 2), (0x6000, 1, 2, 0)],
            &[(0x4000, header)],
        );
        let o = run(&d);
        assert!(o.activated && !o.needs_reset, "{o:?}");
        assert_eq!(o.used_idx, 1);
    }

    #[test]
    fn an_indirect_descriptor_makes_the_device_need_a_reset() {
        // VIRTQ_DESC_F_INDIRECT (4) on the head: a table of 65,535 entries that is never read.
        let d = input(&[(0x4000, 0xffff * 16, 4, 0)], &[]);
        let o = run(&d);
        assert!(o.activated, "{o:?}");
        assert!(o.needs_reset, "{o:?}");
        assert_eq!(o.used_idx, 0, "no request completed");
    }

    #[test]
    fn a_misplaced_queue_is_refused_and_an_empty_one_idles() {
        // A 256-entry descriptor table 16 bytes before the end of guest memory.
        let o = run(&[0, 1, 0xf0, 0xff, 0, 0, 0, 0, 0]);
        assert!(!o.activated && o.needs_reset, "{o:?}");
        // No input: the queue keeps its default size, every ring at 0, nothing available.
        let o = run(&[]);
        assert!(o.activated && !o.needs_reset && o.used_idx == 0, "{o:?}");
    }
}
