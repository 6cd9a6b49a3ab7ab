//! Guest physical memory map of a colo MicroVM.

/// The boot GDT written for the 64-bit Linux boot protocol.
pub const BOOT_GDT: u64 = 0x500;
/// The (empty) boot IDT.
pub const BOOT_IDT: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO: u64 = 0x6000;
/// PVH memory map (up to [`MAX_E820`] entries of 24 bytes).
pub const PVH_MEMMAP: u64 = 0x6040;
/// PVH module list (the initrd).
pub const PVH_MODLIST: u64 = 0x6200;
/// Linux zero page (`boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Page tables for the 64-bit Linux boot protocol: PML4, PDPT, PD (identity map of 1 GiB).
pub const BOOT_PML4: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Longest command line accepted, bytes (without the NUL).
pub const CMDLINE_MAX: usize = 4095;
/// Start of the extended BIOS data area: RAM below it is usable, the MP table lives there.
pub const EBDA_START: u64 = 0x9fc00;
/// Where high memory (and the kernel) starts.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the hole below 4 GiB kept free of RAM for MMIO devices, IOAPIC and LAPIC.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of that hole.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio device; each takes [`VIRTIO_MMIO_SIZE`] bytes.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// IRQ of the first virtio-mmio device (then one per device).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// The virtio-console window (`--channel`): after the windows of the most disks a VM may have,
/// at a fixed address so colo's workload guest can find it.
pub const CHANNEL_MMIO_BASE: u64 = VIRTIO_MMIO_BASE + 8 * VIRTIO_MMIO_SIZE;
/// IRQ of the virtio-console device: after the most disks' lines.
pub const CHANNEL_IRQ: u32 = VIRTIO_IRQ_BASE + 8;
/// IRQ of COM1.
pub const SERIAL_IRQ: u32 = 4;
/// Largest number of e820 / PVH memory map entries written.
pub const MAX_E820: usize = 8;

/// The RAM ranges `(start, size)` of a guest with `size` bytes: below the MMIO hole, and the rest
/// above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

/// The memory map given to the guest: `(start, size, e820 type)`, type 1 = RAM, 2 = reserved.
pub fn e820_map(size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, 1),
        (EBDA_START, HIMEM_START - EBDA_START, 2),
    ];
    for (start, len) in ram_ranges(size) {
        if start == 0 {
            map.push((HIMEM_START, len - HIMEM_START, 1));
        } else {
            map.push((start, len, 1));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_mmio_hole() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![
                (0, MMIO_GAP_START),
                (MMIO_GAP_END, (4 << 30) - MMIO_GAP_START)
            ]
        );
        let map = e820_map(128 << 20);
        assert_eq!(map[2], (HIMEM_START, (128 << 20) - HIMEM_START, 1));
        assert!(map.len() <= MAX_E820);
    }
}
