//! The Intel MultiProcessor Specification 1.4 table a Linux guest without ACPI finds its vCPUs
//! and interrupt routing in (`CONFIG_X86_MPPARSE`): a floating pointer structure at
//! [`EBDA_START`] (where Linux scans for it) pointing at a configuration table right after it.
//!
//! Entries: one processor per vCPU (APIC id = vCPU index, as CPUID says; vCPU 0 is the boot
//! processor), one ISA bus, the IOAPIC (id = the vCPU count) at its standard address, one I/O
//! interrupt per IOAPIC pin (ISA IRQ n → pin n, conforming polarity and trigger: COM1 on 4, the
//! virtio-mmio devices from 5 up) and the two local interrupts (ExtINT on LINT0, NMI on LINT1).
//! Both structures carry a byte checksum that sums to zero. At most 5,364 bytes (254 vCPUs),
//! inside the reserved range below 1 MiB.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::vmm::layout::{EBDA_START, HIMEM_START};

/// Where the IOAPIC's registers are.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Where each local APIC's registers are.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// Pins of KVM's in-kernel IOAPIC.
pub const IOAPIC_PINS: u8 = 24;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const PROCESSOR_LEN: usize = 20;
const ENTRY_LEN: usize = 8;
const SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// Family 6 in the CPU signature, as QEMU and Firecracker give it.
const CPU_SIGNATURE: u32 = 6 << 8;
/// CPUID.1:EDX bits the entry repeats: FPU and APIC.
const CPU_FEATURES: u32 = 1 | (1 << 9);
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_BUS: u8 = 0;

/// Bytes of the floating pointer and the configuration table for `vcpus` vCPUs.
pub fn size(vcpus: u32) -> usize {
    FLOATING_LEN + HEADER_LEN + PROCESSOR_LEN * vcpus as usize + ENTRY_LEN * entries_after_cpus()
}

/// Bus, IOAPIC, one I/O interrupt per pin, two local interrupts.
fn entries_after_cpus() -> usize {
    2 + usize::from(IOAPIC_PINS) + 2
}

/// The table's bytes, to be placed at `at` (the floating pointer first).
pub fn build(vcpus: u32, at: u64) -> Vec<u8> {
    let table_at = at + FLOATING_LEN as u64;
    let mut table = Vec::with_capacity(size(vcpus));
    // Header; length, checksum and entry count filled in below.
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&[0, 0, SPEC_REV, 0]);
    table.extend_from_slice(b"COLO    ");
    table.extend_from_slice(b"COLO-VMM    ");
    table.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // entry count
    table.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // no extended table
    for cpu in 0..vcpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOTPROCESSOR } else { 0 };
        table.extend_from_slice(&[ENTRY_PROCESSOR, cpu as u8, APIC_VERSION, flags]);
        table.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        table.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        table.extend_from_slice(&[0; 8]);
    }
    table.extend_from_slice(&[ENTRY_BUS, ISA_BUS]);
    table.extend_from_slice(b"ISA   ");
    let ioapic_id = vcpus as u8;
    table.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    table.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for pin in 0..IOAPIC_PINS {
        // Flags 0: the bus's default polarity and trigger mode.
        table.extend_from_slice(&[ENTRY_IO_INTERRUPT, INT_TYPE_INT, 0, 0]);
        table.extend_from_slice(&[ISA_BUS, pin, ioapic_id, pin]);
    }
    table.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0]);
    table.extend_from_slice(&[ISA_BUS, 0, 0xff, 0]);
    table.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0]);
    table.extend_from_slice(&[ISA_BUS, 0, 0xff, 1]);
    let count = vcpus as usize + entries_after_cpus();
    let len = table.len() as u16;
    table[4..6].copy_from_slice(&len.to_le_bytes());
    table[34..36].copy_from_slice(&(count as u16).to_le_bytes());
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(FLOATING_LEN);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&(table_at as u32).to_le_bytes());
    // Length in 16-byte units, revision, checksum, then feature bytes: 0 = a table is present.
    floating.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);
    floating.extend_from_slice(&table);
    floating
}

/// The byte that makes `bytes` (with it in place of a 0) sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)))
}

/// Writes the table for `vcpus` vCPUs at [`EBDA_START`].
pub fn write(mem: &GuestMemoryMmap, vcpus: u32) -> Result<(), BootError> {
    let bytes = build(vcpus, EBDA_START);
    debug_assert!(EBDA_START + bytes.len() as u64 <= HIMEM_START);
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(|_| BootError::GuestMemory { addr: EBDA_START })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::MAX_VCPUS;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([b[i], b[i + 1]])
    }

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
    }

    /// What a reader of the table sees: processors (APIC id, flags), I/O interrupts (source
    /// IRQ, IOAPIC id, pin), local interrupts (type, LINT) and the IOAPIC (id, address).
    #[derive(Debug, Default)]
    struct Parsed {
        cpus: Vec<(u8, u8)>,
        buses: Vec<Vec<u8>>,
        ioapics: Vec<(u8, u32)>,
        io_ints: Vec<(u8, u8, u8)>,
        local_ints: Vec<(u8, u8)>,
    }

    /// Finds the floating pointer in `mem` as Linux does (on a 16-byte boundary with a valid
    /// checksum) and walks the configuration table it points at.
    fn parse(mem: &GuestMemoryMmap) -> Parsed {
        let mut low = vec![0u8; (HIMEM_START - EBDA_START) as usize];
        mem.read_slice(&mut low, GuestAddress(EBDA_START)).unwrap();
        let at = (0..low.len() - 16)
            .step_by(16)
            .find(|i| &low[*i..*i + 4] == b"_MP_")
            .expect("a floating pointer");
        let fp = &low[at..at + 16];
        assert_eq!(sum(fp), 0, "floating pointer checksum");
        assert_eq!((fp[8], fp[9]), (1, 4), "length and revision");
        let table_at = u64::from(u32_at(fp, 4));
        let mut hdr = [0u8; HEADER_LEN];
        mem.read_slice(&mut hdr, GuestAddress(table_at)).unwrap();
        assert_eq!(&hdr[..4], b"PCMP");
        assert_eq!(hdr[6], 4);
        assert_eq!(u32_at(&hdr, 36), LAPIC_ADDR);
        let len = usize::from(u16_at(&hdr, 4));
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(table_at)).unwrap();
        assert_eq!(sum(&table), 0, "table checksum");
        let count = u16_at(&table, 34);
        let mut p = Parsed::default();
        let mut i = HEADER_LEN;
        for _ in 0..count {
            match table[i] {
                ENTRY_PROCESSOR => {
                    p.cpus.push((table[i + 1], table[i + 3]));
                    i += PROCESSOR_LEN;
                }
                ENTRY_BUS => {
                    p.buses.push(table[i + 2..i + 8].to_vec());
                    i += ENTRY_LEN;
                }
                ENTRY_IOAPIC => {
                    p.ioapics.push((table[i + 1], u32_at(&table, i + 4)));
                    i += ENTRY_LEN;
                }
                ENTRY_IO_INTERRUPT => {
                    assert_eq!(table[i + 1], INT_TYPE_INT);
                    p.io_ints.push((table[i + 5], table[i + 6], table[i + 7]));
                    i += ENTRY_LEN;
                }
                ENTRY_LOCAL_INTERRUPT => {
                    p.local_ints.push((table[i + 1], table[i + 7]));
                    i += ENTRY_LEN;
                }
                t => panic!("unknown entry type {t} at {i}"),
            }
        }
        assert_eq!(i, len, "entries fill the table exactly");
        p
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
    }

    #[test]
    fn a_reader_finds_every_vcpu_and_the_interrupt_routing() {
        for vcpus in [1, 2, 4, MAX_VCPUS] {
            let m = mem();
            write(&m, vcpus).unwrap();
            let p = parse(&m);
            assert_eq!(p.cpus.len(), vcpus as usize);
            for (i, (id, flags)) in p.cpus.iter().enumerate() {
                assert_eq!(usize::from(*id), i);
                let boot = if i == 0 { CPU_BOOTPROCESSOR } else { 0 };
                assert_eq!(*flags, CPU_ENABLED | boot);
            }
            assert_eq!(p.buses, vec![b"ISA   ".to_vec()]);
            let ioapic = vcpus as u8;
            assert_eq!(p.ioapics, vec![(ioapic, IOAPIC_ADDR)]);
            assert_eq!(p.io_ints.len(), usize::from(IOAPIC_PINS));
            // COM1, the first disk and the console reach the IOAPIC pin of the same number.
            use crate::vmm::layout::{CHANNEL_IRQ, SERIAL_IRQ, VIRTIO_IRQ_BASE};
            for irq in [SERIAL_IRQ, VIRTIO_IRQ_BASE, CHANNEL_IRQ] {
                assert!(
                    p.io_ints.contains(&(irq as u8, ioapic, irq as u8)),
                    "IRQ {irq}"
                );
            }
            assert_eq!(p.local_ints, vec![(INT_TYPE_EXTINT, 0), (INT_TYPE_NMI, 1)]);
            assert!(EBDA_START + size(vcpus) as u64 <= HIMEM_START);
        }
    }

    #[test]
    fn its_size_is_what_is_written() {
        for vcpus in [1, 3, MAX_VCPUS] {
            assert_eq!(build(vcpus, EBDA_START).len(), size(vcpus));
        }
        assert_eq!(size(MAX_VCPUS), 5364);
    }

    #[test]
    fn memory_too_small_for_it_is_an_error() {
        let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x9_0000)]).unwrap();
        assert!(matches!(write(&m, 1), Err(BootError::GuestMemory { .. })));
    }
}
