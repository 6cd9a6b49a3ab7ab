//! Walking a split-ring descriptor chain in guest memory, as the devices' own code rather than
//! `virtio_queue::DescriptorChain`'s iterator, because that iterator follows indirect tables
//! (`VIRTQ_DESC_F_INDIRECT`, up to 65,535 entries) whether or not the feature was negotiated.
//! colo offers no `VIRTIO_RING_F_INDIRECT_DESC`, so a driver that sets the flag broke the
//! protocol: [`walk`] says so and the device asks for a reset (DEVICE_NEEDS_RESET), as it does
//! for the other broken-ring cases.
//!
//! Cost: one 16-byte guest read per descriptor, at most `size` of them (a loop ends there).

use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// One descriptor of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    /// Guest address of the buffer.
    pub addr: GuestAddress,
    /// Its length in bytes.
    pub len: u32,
    /// Whether the device writes it (`VIRTQ_DESC_F_WRITE`).
    pub writable: bool,
}

/// Where a queue's descriptor table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescTable {
    /// Guest address of entry 0.
    pub addr: GuestAddress,
    /// Entries (the queue size the driver chose).
    pub size: u16,
}

/// Why a chain cannot be served at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A descriptor refers to an indirect table, a feature the device does not offer.
    #[error(
        "descriptor {index} of the chain at head {head} sets VIRTQ_DESC_F_INDIRECT, but \
         VIRTIO_RING_F_INDIRECT_DESC was not negotiated"
    )]
    Indirect {
        /// The chain's head.
        head: u16,
        /// The descriptor with the flag.
        index: u16,
    },
    /// The chain does not end where the driver says: a link leaves the table, loops, reaches a
    /// descriptor that cannot be read, or the lengths add up past 2^32 - 1 bytes.
    #[error(
        "the chain at head {head} is cut short: a link leaves the table or loops, a descriptor \
         cannot be read, or its lengths exceed 2^32 - 1 bytes"
    )]
    Broken {
        /// The chain's head.
        head: u16,
    },
}

/// The descriptors of the chain starting at `head`, in order. A link out of the table, a
/// descriptor that cannot be read, a loop (more than `size` links) or a chain longer than
/// 2^32 - 1 bytes in total (virtio 1.x §2.7.5.2) ends the chain there; the request parser then
/// finds it incomplete. An indirect descriptor refuses the whole chain.
pub fn walk(mem: &GuestMemoryMmap, table: DescTable, head: u16) -> Result<Vec<Desc>, ChainError> {
    walk_inner(mem, table, head).map(|(descs, _)| descs)
}

/// As [`walk`], but a chain that [`walk`] would end early is refused ([`ChainError::Broken`]):
/// for devices whose requests have no trailing status to find missing.
pub fn walk_whole(
    mem: &GuestMemoryMmap,
    table: DescTable,
    head: u16,
) -> Result<Vec<Desc>, ChainError> {
    match walk_inner(mem, table, head)? {
        (descs, true) => Ok(descs),
        (_, false) => Err(ChainError::Broken { head }),
    }
}

/// The descriptors, and whether the last one ends the chain (no NEXT flag).
fn walk_inner(
    mem: &GuestMemoryMmap,
    table: DescTable,
    head: u16,
) -> Result<(Vec<Desc>, bool), ChainError> {
    let mut descs = Vec::new();
    let mut index = head;
    let mut total = 0u32;
    for _ in 0..table.size {
        if index >= table.size {
            break;
        }
        let Some(at) = table.addr.0.checked_add(16 * u64::from(index)) else {
            break;
        };
        let Ok(raw) = mem.read_obj::<[u8; 16]>(GuestAddress(at)) else {
            break;
        };
        let addr = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes"));
        let flags = u32::from(u16::from_le_bytes([raw[12], raw[13]]));
        let next = u16::from_le_bytes([raw[14], raw[15]]);
        if flags & VRING_DESC_F_INDIRECT != 0 {
            return Err(ChainError::Indirect { head, index });
        }
        let Some(sum) = total.checked_add(len) else {
            break;
        };
        total = sum;
        descs.push(Desc {
            addr: GuestAddress(addr),
            len,
            writable: flags & VRING_DESC_F_WRITE != 0,
        });
        if flags & VRING_DESC_F_NEXT == 0 {
            return Ok((descs, true));
        }
        index = next;
    }
    Ok((descs, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: DescTable = DescTable {
        addr: GuestAddress(0x1000),
        size: 8,
    };

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap()
    }

    fn put(m: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u32, next: u16) {
        let at = TABLE.addr.0 + 16 * u64::from(i);
        m.write_obj(addr, GuestAddress(at)).unwrap();
        m.write_obj(len, GuestAddress(at + 8)).unwrap();
        m.write_obj(flags as u16, GuestAddress(at + 12)).unwrap();
        m.write_obj(next, GuestAddress(at + 14)).unwrap();
    }

    #[test]
    fn a_chain_is_read_in_link_order() {
        let m = mem();
        put(&m, 2, 0x4000, 16, VRING_DESC_F_NEXT, 5);
        put(&m, 5, 0x5000, 1, VRING_DESC_F_WRITE, 0);
        let d = walk(&m, TABLE, 2).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].addr, d[0].len, d[0].writable),
            (GuestAddress(0x4000), 16, false)
        );
        assert_eq!(
            (d[1].addr, d[1].len, d[1].writable),
            (GuestAddress(0x5000), 1, true)
        );
    }

    #[test]
    fn an_indirect_descriptor_is_refused_wherever_it_is() {
        let m = mem();
        // The whole request in a 65,535-entry indirect table, as a driver would put it.
        put(&m, 0, 0x8000, 0xffff * 16, VRING_DESC_F_INDIRECT, 0);
        assert_eq!(
            walk(&m, TABLE, 0),
            Err(ChainError::Indirect { head: 0, index: 0 })
        );
        // Or after a direct header.
        put(&m, 1, 0x4000, 16, VRING_DESC_F_NEXT, 3);
        put(
            &m,
            3,
            0x8000,
            64,
            VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT,
            4,
        );
        let e = walk(&m, TABLE, 1).unwrap_err();
        assert_eq!(e, ChainError::Indirect { head: 1, index: 3 });
        assert!(e.to_string().contains("VIRTIO_RING_F_INDIRECT_DESC"), "{e}");
    }

    #[test]
    fn loops_links_out_of_the_table_and_huge_totals_end_the_chain() {
        let m = mem();
        // 0 -> 1 -> 0 -> ...: at most `size` descriptors.
        put(&m, 0, 0x4000, 16, VRING_DESC_F_NEXT, 1);
        put(&m, 1, 0x4000, 16, VRING_DESC_F_NEXT, 0);
        assert_eq!(walk(&m, TABLE, 0).unwrap().len(), 8);
        // A link past the table.
        put(&m, 1, 0x4000, 16, VRING_DESC_F_NEXT, 99);
        assert_eq!(walk(&m, TABLE, 0).unwrap().len(), 2);
        // A head past the table.
        assert!(walk(&m, TABLE, 8).unwrap().is_empty());
        // Lengths summing past u32::MAX stop before the overflowing descriptor.
        put(&m, 0, 0x4000, u32::MAX, VRING_DESC_F_NEXT, 1);
        put(&m, 1, 0x4000, 2, 0, 0);
        assert_eq!(walk(&m, TABLE, 0).unwrap().len(), 1);
        // A table that ends at the end of guest memory.
        let edge = DescTable {
            addr: GuestAddress((1 << 16) - 16),
            size: 4,
        };
        assert!(walk(&m, edge, 1).unwrap().is_empty());
    }

    #[test]
    fn walk_whole_refuses_what_walk_cuts_short() {
        let m = mem();
        put(&m, 0, 0x4000, 16, VRING_DESC_F_NEXT, 1);
        put(&m, 1, 0x4000, 16, VRING_DESC_F_NEXT, 0);
        assert_eq!(
            walk_whole(&m, TABLE, 0),
            Err(ChainError::Broken { head: 0 })
        );
        put(&m, 1, 0x4000, 16, VRING_DESC_F_NEXT, 99);
        assert_eq!(
            walk_whole(&m, TABLE, 0),
            Err(ChainError::Broken { head: 0 })
        );
        assert_eq!(
            walk_whole(&m, TABLE, 8),
            Err(ChainError::Broken { head: 8 })
        );
        put(&m, 1, 0x4000, 16, 0, 0);
        assert_eq!(walk_whole(&m, TABLE, 0).unwrap().len(), 2);
    }
}
