//! Initial registers of each vCPU for the entry protocols of [`super::EntryProtocol`].

use kvm_bindings::{KVM_MP_STATE_RUNNABLE, kvm_mp_state, kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{BootError, EntryProtocol};
use crate::vmm::layout::{BOOT_GDT, BOOT_IDT, BOOT_PML4, PVH_INFO, ZERO_PAGE};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// A flat segment: base 0, 4 GiB limit, present, ring 0.
fn flat(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Sets the registers of vCPU `index` (of `count`) for `protocol`. With PVH and the Linux
/// protocol only the boot vCPU is set up; the others wait in KVM for INIT/SIPI from the guest.
pub fn setup_vcpu(
    vcpu: &VcpuFd,
    protocol: &EntryProtocol,
    index: u32,
    count: u32,
) -> Result<(), kvm_ioctls::Error> {
    if index != 0 && !matches!(protocol, EntryProtocol::Colo(_)) {
        return Ok(());
    }
    // Read first: the defaults carry the APIC base and the reset state of TR and LDT.
    let mut sregs = vcpu.get_sregs()?;
    let mut regs = kvm_regs {
        rflags: 0x2,
        ..Default::default()
    };
    match protocol {
        EntryProtocol::Colo(note) => {
            let code = flat(0x08, 0xb, true);
            let data = flat(0x10, 0x3, false);
            sregs.cs = code;
            (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
            sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
            sregs.cr3 = note.pml4;
            sregs.cr4 = CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
            regs.rip = note.entry64;
            regs.rdi = u64::from(index);
            regs.rsi = u64::from(count);
            regs.rbx = PVH_INFO;
        }
        EntryProtocol::Pvh { entry } => {
            let code = flat(0x08, 0xb, false);
            let data = flat(0x10, 0x3, false);
            sregs.cs = code;
            (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
            sregs.tr = kvm_segment {
                base: 0,
                limit: 0x67,
                selector: 0x18,
                type_: 0xb,
                present: 1,
                s: 0,
                ..Default::default()
            };
            sregs.cr0 = CR0_PE | CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rip = *entry;
            regs.rbx = PVH_INFO;
        }
        EntryProtocol::Linux64 { entry } => {
            let code = flat(0x08, 0xb, true);
            let data = flat(0x10, 0x3, false);
            sregs.cs = code;
            (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
            sregs.tr = kvm_segment {
                base: 0,
                limit: 0xfffff,
                selector: 0x18,
                type_: 0xb,
                present: 1,
                s: 0,
                g: 1,
                ..Default::default()
            };
            sregs.gdt.base = BOOT_GDT;
            sregs.gdt.limit = 31;
            sregs.idt.base = BOOT_IDT;
            sregs.idt.limit = 7;
            sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
            sregs.cr3 = BOOT_PML4;
            sregs.cr4 = CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
            regs.rip = *entry;
            regs.rsi = ZERO_PAGE;
            regs.rsp = 0x8ff0;
            regs.rbp = 0x8ff0;
        }
    }
    vcpu.set_sregs(&sregs)?;
    vcpu.set_regs(&regs)?;
    if index != 0 {
        // With the in-kernel irqchip, KVM holds application processors until INIT/SIPI; colo's
        // protocol starts them directly.
        vcpu.set_mp_state(kvm_mp_state {
            mp_state: KVM_MP_STATE_RUNNABLE,
        })?;
    }
    Ok(())
}

/// Page tables and GDT for the 64-bit Linux boot protocol: an identity map of the first GiB in
/// 2 MiB pages, and a GDT with code (0x08), data (0x10) and TSS (0x18) entries.
pub fn write_boot_page_tables(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    let err = |addr| BootError::GuestMemory { addr };
    let pdpt = BOOT_PML4 + 0x1000;
    let pd = BOOT_PML4 + 0x2000;
    mem.write_obj(pdpt | 0x3, GuestAddress(BOOT_PML4))
        .map_err(|_| err(BOOT_PML4))?;
    mem.write_obj(pd | 0x3, GuestAddress(pdpt))
        .map_err(|_| err(pdpt))?;
    let mut table = Vec::with_capacity(4096);
    for i in 0u64..512 {
        table.extend_from_slice(&((i << 21) | 0x83).to_le_bytes());
    }
    mem.write_slice(&table, GuestAddress(pd))
        .map_err(|_| err(pd))?;
    let gdt: [u64; 4] = [
        0,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x008f_8b00_0000_ffff,
    ];
    for (i, entry) in gdt.iter().enumerate() {
        let addr = BOOT_GDT + 8 * i as u64;
        mem.write_obj(*entry, GuestAddress(addr))
            .map_err(|_| err(addr))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT))
        .map_err(|_| err(BOOT_IDT))
}
