//! virtio-blk requests: parsing descriptor chains in guest memory into a [`Request`] (running
//! one is `execute.rs`).
//!
//! Every guest-controlled value is checked: descriptors outside guest memory, chains without a
//! writable status byte, data in the wrong direction, lengths that are not whole sectors and
//! sectors past the end all complete with `VIRTIO_BLK_S_IOERR` (or with no status at all when
//! there is nowhere to write one); nothing reads or writes outside guest memory.

use virtio_bindings::virtio_blk;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::vmm::devices::virtio::chain::{ChainError, Desc, DescTable, walk};

/// Sector size of the virtio-blk protocol.
pub const SECTOR: u64 = 512;

/// Request types (the header's first field).
pub(super) const T_IN: u32 = virtio_blk::VIRTIO_BLK_T_IN;
pub(super) const T_OUT: u32 = virtio_blk::VIRTIO_BLK_T_OUT;
pub(super) const T_FLUSH: u32 = virtio_blk::VIRTIO_BLK_T_FLUSH;
pub(super) const T_GET_ID: u32 = virtio_blk::VIRTIO_BLK_T_GET_ID;
/// Status values.
pub const S_OK: u8 = virtio_blk::VIRTIO_BLK_S_OK as u8;
/// An IO error, or a malformed request.
pub const S_IOERR: u8 = virtio_blk::VIRTIO_BLK_S_IOERR as u8;
/// An unsupported request type.
pub const S_UNSUPP: u8 = virtio_blk::VIRTIO_BLK_S_UNSUPP as u8;

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

/// Parses the chain at `head` of the descriptor table `table` for a disk of `capacity` sectors.
///
/// # Errors
/// [`ChainError`] when the chain breaks the ring protocol (an indirect descriptor): the device
/// then needs a reset, there is no request to complete.
pub fn parse_chain(
    head: u16,
    table: DescTable,
    mem: &GuestMemoryMmap,
    capacity: u64,
    read_only: bool,
) -> Result<ParsedChain, ChainError> {
    let descs = walk(mem, table, head)?;
    Ok(parse_descs(head, &descs, mem, capacity, read_only))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::block::test_util::*;
    use vm_memory::Bytes;

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
        assert_eq!(pop_and_parse(&mut q, &m, cap, true).request, Err(S_IOERR));
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
        let p = pop_and_parse(&mut q, &m, 64, false);
        assert!(p.request.is_err(), "{p:?}");
    }
}
