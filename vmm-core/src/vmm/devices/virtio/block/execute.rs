//! Running a parsed virtio-blk [`Request`] against the raw backing file (opened with `O_DIRECT`
//! by default): data moves straight between the file and guest memory when both are aligned,
//! through an aligned bounce buffer otherwise, of at most [`BOUNCE_MAX`] bytes whatever the
//! request's size (a larger unaligned segment moves in rounds).

use std::fs::File;
use std::os::fd::AsRawFd;

use virtio_bindings::virtio_blk;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::request::{Request, RequestKind, S_IOERR, S_OK, SECTOR};

/// Length of the id string of GET_ID.
const ID_LEN: usize = virtio_blk::VIRTIO_BLK_ID_BYTES as usize;
/// Alignment that `O_DIRECT` is given: buffers, offsets and lengths on 4 KiB boundaries go
/// straight between the file and guest memory; others through an aligned bounce buffer.
const DIRECT_ALIGN: u64 = 4096;
/// Largest bounce buffer: an unaligned segment of any size moves through it in rounds. A
/// multiple of [`DIRECT_ALIGN`] larger than it, so every round makes progress.
pub(super) const BOUNCE_MAX: usize = 256 * 1024;

/// A page-aligned heap buffer for `O_DIRECT` transfers that guest buffers cannot take directly.
struct Bounce {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Bounce {
    fn new(len: usize) -> Option<Self> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), DIRECT_ALIGN as usize).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(Self { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `layout.size()` bytes we own exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// Reads or writes all of `buf` at `offset`, retrying short transfers.
fn transfer_all(
    file: &File,
    write: bool,
    mut ptr: *mut u8,
    mut len: usize,
    mut offset: u64,
) -> bool {
    while len > 0 {
        // SAFETY: `ptr..ptr+len` is memory the caller guarantees valid for this transfer (a
        // checked guest-memory range or a bounce buffer); pread/pwrite do not retain it.
        let n = unsafe {
            if write {
                libc::pwrite(
                    file.as_raw_fd(),
                    ptr as *const libc::c_void,
                    len,
                    offset as i64,
                )
            } else {
                libc::pread(file.as_raw_fd(), ptr.cast(), len, offset as i64)
            }
        };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        if n == 0 {
            if write {
                return false;
            }
            // Past the end of the file: the rest reads as zeros.
            // SAFETY: as above; `len` bytes at `ptr` are writable.
            unsafe { std::ptr::write_bytes(ptr, 0, len) };
            return true;
        }
        let n = n as usize;
        // SAFETY: n <= len, so the pointer stays inside the caller's range.
        ptr = unsafe { ptr.add(n) };
        len -= n;
        offset += n as u64;
    }
    true
}

/// Moves one segment between the file and guest memory at byte `offset` of the disk.
fn transfer_segment(
    file: &File,
    mem: &GuestMemoryMmap,
    write: bool,
    addr: GuestAddress,
    len: u32,
    offset: u64,
) -> bool {
    let Ok(slice) = mem.get_slice(addr, len as usize) else {
        return false;
    };
    let guard = slice.ptr_guard_mut();
    let host = guard.as_ptr();
    let len = len as usize;
    let aligned = (host as u64).is_multiple_of(DIRECT_ALIGN)
        && (len as u64).is_multiple_of(DIRECT_ALIGN)
        && offset.is_multiple_of(DIRECT_ALIGN);
    if aligned {
        return transfer_all(file, write, host, len, offset);
    }
    // Through an aligned buffer, at most BOUNCE_MAX bytes of the file's enclosing aligned range
    // at a time: the guest's layout decides how many rounds, never how much the VMM allocates.
    let Some(mut bounce) = Bounce::new(bounce_len(offset, len)) else {
        return false;
    };
    let buf = bounce.as_mut_slice();
    let mut done = 0usize;
    while done < len {
        let pos = offset + done as u64;
        let start = pos - pos % DIRECT_ALIGN;
        let head = (pos - start) as usize;
        let take = (len - done).min(buf.len() - head);
        let window = (head + take).next_multiple_of(DIRECT_ALIGN as usize);
        let window = &mut buf[..window];
        // A write reads first too: the partial blocks at either end are read-modify-write.
        if !transfer_all(file, false, window.as_mut_ptr(), window.len(), start) {
            return false;
        }
        let Ok(part) = slice.subslice(done, take) else {
            return false;
        };
        if write {
            part.copy_to(&mut window[head..head + take]);
            if !transfer_all(file, true, window.as_mut_ptr(), window.len(), start) {
                return false;
            }
        } else {
            part.copy_from(&window[head..head + take]);
        }
        done += take;
    }
    true
}

/// Bytes of bounce buffer for an unaligned transfer of `len` bytes at disk byte `offset`: the
/// enclosing aligned range, capped at [`BOUNCE_MAX`].
fn bounce_len(offset: u64, len: usize) -> usize {
    let start = offset - offset % DIRECT_ALIGN;
    let end = (offset + len as u64).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    usize::try_from(end - start).map_or(BOUNCE_MAX, |n| n.min(BOUNCE_MAX))
}

/// The outcome of running a request: status byte and bytes written into guest buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Status byte for the guest.
    pub status: u8,
    /// Bytes the device wrote into the chain (data + status), for the used ring.
    pub used_len: u32,
}

/// Runs `req` against `file`; `id` is the device id string for GET_ID.
pub fn execute(req: &Request, file: &File, mem: &GuestMemoryMmap, id: &str) -> Completion {
    let ioerr = Completion {
        status: S_IOERR,
        used_len: 1,
    };
    match req.kind {
        RequestKind::In | RequestKind::Out => {
            let write = req.kind == RequestKind::Out;
            let mut offset = req.sector * SECTOR;
            for (addr, len) in &req.data {
                if !transfer_segment(file, mem, write, *addr, *len, offset) {
                    return ioerr;
                }
                offset += u64::from(*len);
            }
            Completion {
                status: S_OK,
                used_len: if write { 1 } else { req.data_len as u32 + 1 },
            }
        }
        RequestKind::Flush => {
            // SAFETY: fdatasync on a descriptor we own.
            if unsafe { libc::fdatasync(file.as_raw_fd()) } != 0 {
                return ioerr;
            }
            Completion {
                status: S_OK,
                used_len: 1,
            }
        }
        RequestKind::GetId => {
            let mut bytes = [0u8; ID_LEN];
            let n = id.len().min(ID_LEN);
            bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
            let mut written = 0u32;
            for (addr, len) in &req.data {
                let take = (*len as usize).min(ID_LEN - written as usize);
                if take == 0 {
                    break;
                }
                if mem
                    .write_slice(&bytes[written as usize..written as usize + take], *addr)
                    .is_err()
                {
                    return ioerr;
                }
                written += take as u32;
            }
            Completion {
                status: S_OK,
                used_len: written + 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::block::request::{T_GET_ID, T_IN, T_OUT};
    use crate::vmm::devices::virtio::block::test_util::*;

    #[test]
    fn a_read_request_parses_and_fills_guest_memory() {
        let m = mem();
        header(&m, 0x10000, T_IN, 2);
        let p = parse(
            &m,
            &[
                (0x10000, 16, 0),
                (0x20000, 4096, F_WRITE),
                (0x30000, 1, F_WRITE),
            ],
            64,
        );
        assert_eq!(p.status, Some(GuestAddress(0x30000)));
        let req = p.request.clone().unwrap();
        assert_eq!(
            (req.kind, req.sector, req.data_len),
            (RequestKind::In, 2, 4096)
        );
        assert_eq!(p.cost(), 4096);
        let (_d, f) = backing(64);
        let c = execute(&req, &f, &m, "id");
        assert_eq!(
            c,
            Completion {
                status: S_OK,
                used_len: 4097
            }
        );
        let mut got = vec![0u8; 4096];
        m.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
        let want: Vec<u8> = (1024..1024 + 4096).map(|i| (i % 251) as u8).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unaligned_writes_go_through_the_bounce_buffer() {
        let m = mem();
        header(&m, 0x10000, T_OUT, 3);
        m.write_slice(&[0xab; 512], GuestAddress(0x20100)).unwrap();
        let p = parse(
            &m,
            &[(0x10000, 16, 0), (0x20100, 512, 0), (0x30000, 1, F_WRITE)],
            64,
        );
        let (_d, f) = backing(64);
        let c = execute(&p.request.unwrap(), &f, &m, "id");
        assert_eq!(c.status, S_OK);
        let mut all = vec![0u8; 64 * 512];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut all, 0).unwrap();
        assert!(all[3 * 512..4 * 512].iter().all(|b| *b == 0xab));
        assert_eq!(
            all[3 * 512 - 1],
            ((3 * 512 - 1) % 251) as u8,
            "neighbours untouched"
        );
        assert_eq!(all[4 * 512], ((4 * 512) % 251) as u8);
    }

    #[test]
    fn header_and_data_may_share_a_descriptor_and_get_id_answers() {
        let m = mem();
        header(&m, 0x10000, T_GET_ID, 0);
        let p = parse(&m, &[(0x10000, 16, 0), (0x20000, 21, F_WRITE)], 64);
        let (_d, f) = backing(1);
        let c = execute(&p.request.unwrap(), &f, &m, "colo-disk0");
        assert_eq!(
            c,
            Completion {
                status: S_OK,
                used_len: 21
            }
        );
        let mut id = [0u8; 10];
        m.read_slice(&mut id, GuestAddress(0x20000)).unwrap();
        assert_eq!(&id, b"colo-disk0");
        // An OUT request whose header and data share one readable descriptor.
        header(&m, 0x40000, T_OUT, 0);
        let p = parse(&m, &[(0x40000, 16 + 512, 0), (0x30000, 1, F_WRITE)], 64);
        assert_eq!(p.request.unwrap().data, vec![(GuestAddress(0x40010), 512)]);
    }

    #[test]
    fn the_bounce_buffer_stays_small_whatever_the_segment() {
        assert_eq!(bounce_len(512, 512), 4096);
        assert_eq!(bounce_len(4095, 2), 8192);
        assert_eq!(bounce_len(0, u32::MAX as usize), BOUNCE_MAX);
        assert_eq!(bounce_len(1 << 40, 3 << 30), BOUNCE_MAX);
    }

    #[test]
    fn an_unaligned_segment_larger_than_the_bounce_buffer_moves_in_rounds() {
        let m = mem();
        let len = 2 * BOUNCE_MAX as u32 + 3 * 512;
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        m.write_slice(&data, GuestAddress(0x10_0100)).unwrap();
        header(&m, 0x10000, T_OUT, 3);
        let st = (0x30000, 1, F_WRITE);
        let p = parse(&m, &[(0x10000, 16, 0), (0x10_0100, len, 0), st], 4096);
        let (_d, f) = backing(4096);
        assert_eq!(execute(&p.request.unwrap(), &f, &m, "id").status, S_OK);
        let mut disk = vec![0u8; 4096 * 512];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut disk, 0).unwrap();
        assert_eq!(&disk[3 * 512..3 * 512 + len as usize], &data[..]);
        assert_eq!(
            disk[3 * 512 - 1],
            ((3 * 512 - 1) % 251) as u8,
            "before untouched"
        );
        let after = 3 * 512 + len as usize;
        assert_eq!(disk[after], (after % 251) as u8, "after untouched");
        // And back, into another unaligned buffer.
        header(&m, 0x11000, T_IN, 3);
        let p = parse(&m, &[(0x11000, 16, 0), (0x20_0200, len, F_WRITE), st], 4096);
        let c = execute(&p.request.unwrap(), &f, &m, "id");
        assert_eq!(
            c,
            Completion {
                status: S_OK,
                used_len: len + 1
            }
        );
        let mut back = vec![0u8; len as usize];
        m.read_slice(&mut back, GuestAddress(0x20_0200)).unwrap();
        assert_eq!(back, data);
    }
}
