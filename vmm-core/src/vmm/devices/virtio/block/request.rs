//! virtio-blk: parsing requests from descriptor chains in guest memory and running them against
//! a raw backing file (opened with `O_DIRECT` by default).
//!
//! Every guest-controlled value is checked: descriptors outside guest memory, chains without a
//! writable status byte, data in the wrong direction, lengths that are not whole sectors and
//! sectors past the end all complete with `VIRTIO_BLK_S_IOERR` (or with no status at all when
//! there is nowhere to write one); nothing reads or writes outside guest memory.

use std::fs::File;
use std::os::fd::AsRawFd;

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Sector size of the virtio-blk protocol.
pub const SECTOR: u64 = 512;
/// Virtio device type of a block device.
pub const DEVICE_ID: u32 = 2;
/// VIRTIO_BLK_F_RO.
pub const F_RO: u64 = 1 << 5;
/// VIRTIO_BLK_F_FLUSH.
pub const F_FLUSH: u64 = 1 << 9;

/// Request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
/// Status values.
pub const S_OK: u8 = 0;
/// An IO error, or a malformed request.
pub const S_IOERR: u8 = 1;
/// An unsupported request type.
pub const S_UNSUPP: u8 = 2;
/// Length of the id string of GET_ID.
const ID_LEN: usize = 20;
/// Alignment that `O_DIRECT` is given: buffers, offsets and lengths on 4 KiB boundaries go
/// straight between the file and guest memory; others through an aligned bounce buffer.
const DIRECT_ALIGN: u64 = 4096;

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Read sectors into the guest.
    In,
    /// Write sectors from the guest.
    Out,
    /// Make written data durable.
    Flush,
    /// Return the device id string.
    GetId,
}

/// A request that parsed into something the device can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub kind: RequestKind,
    /// First sector.
    pub sector: u64,
    /// Data segments in guest memory (checked to lie inside it).
    pub data: Vec<(GuestAddress, u32)>,
    /// Total data bytes.
    pub data_len: u64,
}

/// A parsed chain: its head, where the status goes, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedChain {
    /// Head descriptor index (for the used ring).
    pub head: u16,
    /// The status byte, if the chain has a usable one.
    pub status: Option<GuestAddress>,
    /// The request, or the status to report without doing anything.
    pub request: Result<Request, u8>,
}

impl ParsedChain {
    /// Bytes a rate limiter should charge (data for reads and writes, 0 otherwise).
    pub fn cost(&self) -> u64 {
        match &self.request {
            Ok(r) if matches!(r.kind, RequestKind::In | RequestKind::Out) => r.data_len,
            _ => 0,
        }
    }
}

/// One descriptor of a chain.
#[derive(Debug, Clone, Copy)]
struct Desc {
    addr: GuestAddress,
    len: u32,
    writable: bool,
}

/// Parses the chain of a virtio-blk request for a disk of `capacity` sectors.
pub fn parse_chain(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    capacity: u64,
    read_only: bool,
) -> ParsedChain {
    let head = chain.head_index();
    // The iterator stops at a broken link (index out of range, loop, indirect table problems).
    let descs: Vec<Desc> = chain
        .map(|d| Desc {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        })
        .collect();
    parse_descs(head, &descs, mem, capacity, read_only)
}

fn in_memory(mem: &GuestMemoryMmap, addr: GuestAddress, len: u64) -> bool {
    len == 0 || usize::try_from(len).is_ok_and(|l| GuestMemoryBackend::check_range(mem, addr, l))
}

fn parse_descs(
    head: u16,
    descs: &[Desc],
    mem: &GuestMemoryMmap,
    capacity: u64,
    read_only: bool,
) -> ParsedChain {
    // The status byte is the last byte of the last descriptor, which must be device-writable.
    let status = descs.last().and_then(|d| {
        (d.writable && d.len >= 1)
            .then(|| d.addr.checked_add(u64::from(d.len) - 1))
            .flatten()
            .filter(|a| in_memory(mem, *a, 1))
    });
    let fail = |code| ParsedChain {
        head,
        status,
        request: Err(code),
    };
    if status.is_none() {
        return fail(S_IOERR);
    }
    // Readable descriptors first, then writable ones (virtio 1.x §2.7.4.2).
    let split = descs.iter().position(|d| d.writable).unwrap_or(descs.len());
    if descs[split..].iter().any(|d| !d.writable) {
        return fail(S_IOERR);
    }
    let (readable, writable) = descs.split_at(split);
    if descs
        .iter()
        .any(|d| !in_memory(mem, d.addr, u64::from(d.len)))
    {
        return fail(S_IOERR);
    }

    // The 16-byte header may span readable descriptors.
    let mut header = [0u8; 16];
    let mut got = 0usize;
    let mut rest: Vec<(GuestAddress, u32)> = Vec::new();
    for d in readable {
        let take = (16 - got).min(d.len as usize);
        if take > 0
            && mem
                .read_slice(&mut header[got..got + take], d.addr)
                .is_err()
        {
            return fail(S_IOERR);
        }
        got += take;
        if (take as u32) < d.len {
            rest.push((d.addr.unchecked_add(take as u64), d.len - take as u32));
        }
    }
    if got < 16 {
        return fail(S_IOERR);
    }
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&header[8..16]);
    let sector = u64::from_le_bytes(s);

    // Writable data: everything writable except the status byte.
    let mut writable_data: Vec<(GuestAddress, u32)> = writable
        .iter()
        .map(|d| (d.addr, d.len))
        .filter(|(_, l)| *l > 0)
        .collect();
    if let Some(last) = writable_data.last_mut() {
        last.1 -= 1;
        if last.1 == 0 {
            writable_data.pop();
        }
    }

    let kind = match kind {
        T_IN => RequestKind::In,
        T_OUT => RequestKind::Out,
        T_FLUSH => RequestKind::Flush,
        T_GET_ID => RequestKind::GetId,
        _ => return fail(S_UNSUPP),
    };
    let data = match kind {
        RequestKind::In | RequestKind::GetId => {
            if !rest.is_empty() {
                return fail(S_IOERR);
            }
            writable_data
        }
        RequestKind::Out => {
            if !writable_data.is_empty() {
                return fail(S_IOERR);
            }
            rest
        }
        RequestKind::Flush => Vec::new(),
    };
    let data_len: u64 = data.iter().map(|(_, l)| u64::from(*l)).sum();
    match kind {
        RequestKind::In | RequestKind::Out => {
            let sectors = data_len / SECTOR;
            let end = sector.checked_add(sectors);
            if !data_len.is_multiple_of(SECTOR) || data_len == 0 || end.is_none_or(|e| e > capacity)
            {
                return fail(S_IOERR);
            }
            if kind == RequestKind::Out && read_only {
                return fail(S_IOERR);
            }
        }
        RequestKind::GetId if data_len == 0 => return fail(S_IOERR),
        _ => {}
    }
    ParsedChain {
        head,
        status,
        request: Ok(Request {
            kind,
            sector,
            data,
            data_len,
        }),
    }
}

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
    // Through an aligned buffer covering the enclosing aligned range of the file.
    let start = offset - offset % DIRECT_ALIGN;
    let end = (offset + len as u64).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    let Some(mut bounce) = Bounce::new((end - start) as usize) else {
        return false;
    };
    let head = (offset - start) as usize;
    let buf = bounce.as_mut_slice();
    if write {
        // Read-modify-write of the partial blocks at either end.
        if !transfer_all(file, false, buf.as_mut_ptr(), buf.len(), start) {
            return false;
        }
        slice.copy_to(&mut buf[head..head + len]);
        transfer_all(file, true, buf.as_mut_ptr(), buf.len(), start)
    } else {
        if !transfer_all(file, false, buf.as_mut_ptr(), buf.len(), start) {
            return false;
        }
        slice.copy_from(&buf[head..head + len]);
        true
    }
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
    use virtio_queue::{Queue, QueueT};

    const MIB: usize = 1 << 20;
    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;
    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 * MIB)]).unwrap()
    }

    /// Writes a chain of (addr, len, flags) descriptors at index 0.., makes it available, and
    /// returns a ready queue.
    fn queue_with_chain(m: &GuestMemoryMmap, descs: &[(u64, u32, u16)]) -> Queue {
        for (i, (addr, len, flags)) in descs.iter().enumerate() {
            let base = DESC + 16 * i as u64;
            let next = if i + 1 < descs.len() { i as u16 + 1 } else { 0 };
            let flags = if i + 1 < descs.len() {
                flags | F_NEXT
            } else {
                *flags
            };
            m.write_obj(*addr, GuestAddress(base)).unwrap();
            m.write_obj(*len, GuestAddress(base + 8)).unwrap();
            m.write_obj(flags, GuestAddress(base + 12)).unwrap();
            m.write_obj(next, GuestAddress(base + 14)).unwrap();
        }
        m.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap(); // ring[0] = head 0
        m.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap(); // idx = 1
        let mut q = Queue::new(16).unwrap();
        q.set_size(16);
        q.set_desc_table_address(Some(DESC as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        q.set_used_ring_address(Some(USED as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(m));
        q
    }

    fn header(m: &GuestMemoryMmap, at: u64, kind: u32, sector: u64) {
        m.write_obj(kind, GuestAddress(at)).unwrap();
        m.write_obj(0u32, GuestAddress(at + 4)).unwrap();
        m.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    fn parse(m: &GuestMemoryMmap, descs: &[(u64, u32, u16)], capacity: u64) -> ParsedChain {
        let mut q = queue_with_chain(m, descs);
        let chain = q.pop_descriptor_chain(m).expect("a chain");
        parse_chain(chain, m, capacity, false)
    }

    fn backing(sectors: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let data: Vec<u8> = (0..sectors * SECTOR).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, data).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, f)
    }

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
    fn malformed_requests_complete_with_ioerr_or_unsupp() {
        let m = mem();
        let cap = 64;
        header(&m, 0x10000, T_IN, 0);
        let st = (0x30000, 1, F_WRITE);
        // Out-of-range sector.
        header(&m, 0x11000, T_IN, 63);
        let p = parse(&m, &[(0x11000, 16, 0), (0x20000, 1024, F_WRITE), st], cap);
        assert_eq!(p.request, Err(S_IOERR));
        // Sector arithmetic that would overflow.
        header(&m, 0x12000, T_IN, u64::MAX);
        let p = parse(&m, &[(0x12000, 16, 0), (0x20000, 512, F_WRITE), st], cap);
        assert_eq!(p.request, Err(S_IOERR));
        // Not a whole number of sectors.
        let p = parse(&m, &[(0x10000, 16, 0), (0x20000, 100, F_WRITE), st], cap);
        assert_eq!(p.request, Err(S_IOERR));
        // Data in the wrong direction for a read.
        let p = parse(&m, &[(0x10000, 16, 0), (0x20000, 512, 0), st], cap);
        assert_eq!(p.request, Err(S_IOERR));
        // Short header.
        let p = parse(&m, &[(0x10000, 8, 0), (0x20000, 512, F_WRITE), st], cap);
        assert_eq!(p.request, Err(S_IOERR));
        // Readable after writable.
        let p = parse(
            &m,
            &[
                (0x10000, 16, 0),
                (0x20000, 512, F_WRITE),
                (0x21000, 512, 0),
                st,
            ],
            cap,
        );
        assert_eq!(p.request, Err(S_IOERR));
        // Data buffer outside guest memory: refused, never touched.
        let p = parse(&m, &[(0x10000, 16, 0), (1 << 40, 512, F_WRITE), st], cap);
        assert_eq!(p.request, Err(S_IOERR));
        let p = parse(
            &m,
            &[(0x10000, 16, 0), (4 * MIB as u64 - 256, 512, F_WRITE), st],
            cap,
        );
        assert_eq!(p.request, Err(S_IOERR));
        // Unknown request type.
        header(&m, 0x13000, 77, 0);
        let p = parse(&m, &[(0x13000, 16, 0), st], cap);
        assert_eq!(p.request, Err(S_UNSUPP));
        assert_eq!(p.status, Some(GuestAddress(0x30000)));
        // Write to a read-only disk.
        header(&m, 0x14000, T_OUT, 0);
        let mut q = queue_with_chain(&m, &[(0x14000, 16, 0), (0x20000, 512, 0), st]);
        let chain = q.pop_descriptor_chain(&m).unwrap();
        assert_eq!(parse_chain(chain, &m, cap, true).request, Err(S_IOERR));
    }

    #[test]
    fn chains_without_a_usable_status_byte_get_no_status() {
        let m = mem();
        header(&m, 0x10000, T_IN, 0);
        // Last descriptor not writable.
        let p = parse(&m, &[(0x10000, 16, 0)], 64);
        assert_eq!((p.status, p.request), (None, Err(S_IOERR)));
        // Status byte outside guest memory.
        let p = parse(&m, &[(0x10000, 16, 0), (1 << 40, 1, F_WRITE)], 64);
        assert_eq!(p.status, None);
    }

    #[test]
    fn a_chain_whose_link_points_past_the_table_is_cut_short() {
        let m = mem();
        header(&m, 0x10000, T_IN, 0);
        let mut q = queue_with_chain(
            &m,
            &[
                (0x10000, 16, 0),
                (0x20000, 512, F_WRITE),
                (0x30000, 1, F_WRITE),
            ],
        );
        // Point descriptor 1's `next` at 99 (the table has 16 entries).
        m.write_obj(99u16, GuestAddress(DESC + 16 + 14)).unwrap();
        let chain = q.pop_descriptor_chain(&m).unwrap();
        let p = parse_chain(chain, &m, 64, false);
        assert!(p.request.is_err(), "{p:?}");
    }
}
