//! Test helpers shared by the request and execution tests: a guest memory, a queue holding one
//! descriptor chain, request headers and a backing file.

use std::fs::File;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::request::{ParsedChain, SECTOR, parse_chain};
use crate::vmm::devices::virtio::chain::DescTable;

pub const MIB: usize = 1 << 20;
pub const DESC: u64 = 0x1000;
pub const AVAIL: u64 = 0x2000;
pub const USED: u64 = 0x3000;
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 * MIB)]).unwrap()
}

/// Writes a chain of (addr, len, flags) descriptors at index 0.., makes it available, and
/// returns a ready queue.
pub fn queue_with_chain(m: &GuestMemoryMmap, descs: &[(u64, u32, u16)]) -> Queue {
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

pub fn header(m: &GuestMemoryMmap, at: u64, kind: u32, sector: u64) {
    m.write_obj(kind, GuestAddress(at)).unwrap();
    m.write_obj(0u32, GuestAddress(at + 4)).unwrap();
    m.write_obj(sector, GuestAddress(at + 8)).unwrap();
}

pub fn parse(m: &GuestMemoryMmap, descs: &[(u64, u32, u16)], capacity: u64) -> ParsedChain {
    let mut q = queue_with_chain(m, descs);
    pop_and_parse(&mut q, m, capacity, false)
}

/// Pops the next chain of `q` and parses it as the device does.
pub fn pop_and_parse(q: &mut Queue, m: &GuestMemoryMmap, capacity: u64, ro: bool) -> ParsedChain {
    let head = q.pop_descriptor_chain(m).expect("a chain").head_index();
    parse_chain(head, table(q), m, capacity, ro).expect("no indirect descriptor")
}

/// The descriptor table of `q`.
pub fn table(q: &Queue) -> DescTable {
    DescTable {
        addr: GuestAddress(q.desc_table()),
        size: q.size(),
    }
}

pub fn backing(sectors: u64) -> (tempfile::TempDir, File) {
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
