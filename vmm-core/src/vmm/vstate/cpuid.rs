//! The CPUID the guest sees.
//!
//! Starts from what KVM supports, marks the hypervisor, gives each vCPU its APIC id, and on
//! KVM-PVM hosts hides the features KVM's instruction emulator cannot run for guest kernel code
//! (the guest would die with an emulation failure): cx16, popcnt, xsave (and the AVX family that
//! needs it), rdrand/rdseed, fsgsbase, smep/smap, pcid/invpcid, umip.

use kvm_bindings::{CpuId, kvm_cpuid_entry2};

/// Kernel arguments that hide the same features from a Linux 6.1 guest (feature numbers of
/// 6.1: cx16, popcnt, rdrand, rdseed, fsgsbase, smap, smep, invpcid, pcid, umip) plus `noxsave`.
/// On KVM-PVM, CPUID executed by emulated guest kernel code does not see the KVM_SET_CPUID2
/// table, so colo-vmm appends these for Linux guests there.
pub const PVM_LINUX_CMDLINE: &str = "noxsave clearcpuid=141,151,158,306,288,308,295,298,145,514";

/// Whether `/dev/kvm` is KVM-PVM (pagetable-based nested virtualization).
pub fn host_is_kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

// Leaf 1, ECX.
const L1_ECX_FMA: u32 = 1 << 12;
const L1_ECX_CX16: u32 = 1 << 13;
const L1_ECX_PCID: u32 = 1 << 17;
const L1_ECX_POPCNT: u32 = 1 << 23;
const L1_ECX_XSAVE: u32 = 1 << 26;
const L1_ECX_OSXSAVE: u32 = 1 << 27;
const L1_ECX_AVX: u32 = 1 << 28;
const L1_ECX_F16C: u32 = 1 << 29;
const L1_ECX_RDRAND: u32 = 1 << 30;
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 7.0, EBX.
const L7_EBX_FSGSBASE: u32 = 1 << 0;
const L7_EBX_AVX2: u32 = 1 << 5;
const L7_EBX_SMEP: u32 = 1 << 7;
const L7_EBX_INVPCID: u32 = 1 << 10;
const L7_EBX_RDSEED: u32 = 1 << 18;
const L7_EBX_SMAP: u32 = 1 << 20;
/// AVX-512 foundation and its extensions (16, 17, 21, 26, 27, 28, 30, 31).
const L7_EBX_AVX512: u32 =
    (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
// Leaf 7.0, ECX.
const L7_ECX_UMIP: u32 = 1 << 2;
const L7_ECX_PKU: u32 = 1 << 3;
const L7_ECX_OSPKE: u32 = 1 << 4;
/// AVX-512 and VEX-encoded extensions that need XSAVE state (vbmi, vbmi2, vaes, vpclmulqdq, gfni,
/// vnni, bitalg, vpopcntdq).
const L7_ECX_XSAVE_DEPENDENT: u32 =
    (1 << 1) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 14);

/// Applies the KVM-PVM filter to a CPUID table (see the module docs).
pub fn hide_emulator_unsupported(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice() {
        match (e.function, e.index) {
            (1, _) => {
                e.ecx &= !(L1_ECX_CX16
                    | L1_ECX_PCID
                    | L1_ECX_POPCNT
                    | L1_ECX_XSAVE
                    | L1_ECX_OSXSAVE
                    | L1_ECX_AVX
                    | L1_ECX_FMA
                    | L1_ECX_F16C
                    | L1_ECX_RDRAND);
            }
            (7, 0) => {
                e.ebx &= !(L7_EBX_FSGSBASE
                    | L7_EBX_AVX2
                    | L7_EBX_SMEP
                    | L7_EBX_INVPCID
                    | L7_EBX_RDSEED
                    | L7_EBX_SMAP
                    | L7_EBX_AVX512);
                e.ecx &= !(L7_ECX_UMIP | L7_ECX_PKU | L7_ECX_OSPKE | L7_ECX_XSAVE_DEPENDENT);
            }
            (7, _) => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            (0xd, _) => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            _ => {}
        }
    }
}

/// Marks the hypervisor in leaf 1 (KVM's paravirtual leaves, kvmclock among them, are already
/// in the supported table).
pub fn mark_hypervisor(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.ecx |= L1_ECX_HYPERVISOR;
        }
    }
}

/// The table of vCPU `index`: its APIC id in leaves 1, 0xb, 0x1f and 0x8000001e.
pub fn for_vcpu(base: &CpuId, index: u32) -> CpuId {
    let mut cpuid = base.clone();
    for e in cpuid.as_mut_slice() {
        set_apic_id(e, index);
    }
    cpuid
}

fn set_apic_id(e: &mut kvm_cpuid_entry2, index: u32) {
    match e.function {
        1 => e.ebx = (e.ebx & 0x00ff_ffff) | ((index & 0xff) << 24),
        0xb | 0x1f => e.edx = index,
        0x8000_001e => e.eax = index,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: !0,
            ebx: !0,
            ecx: !0,
            edx: !0,
            ..Default::default()
        }
    }

    #[test]
    fn pvm_filter_hides_what_the_emulator_lacks() {
        let mut cpuid = CpuId::from_entries(&[entry(1, 0), entry(7, 0), entry(0xd, 1)]).unwrap();
        hide_emulator_unsupported(&mut cpuid);
        mark_hypervisor(&mut cpuid);
        let e = cpuid.as_slice();
        for bit in [
            L1_ECX_CX16,
            L1_ECX_POPCNT,
            L1_ECX_XSAVE,
            L1_ECX_RDRAND,
            L1_ECX_PCID,
        ] {
            assert_eq!(e[0].ecx & bit, 0);
        }
        assert_ne!(e[0].ecx & L1_ECX_HYPERVISOR, 0);
        for bit in [
            L7_EBX_FSGSBASE,
            L7_EBX_SMEP,
            L7_EBX_SMAP,
            L7_EBX_INVPCID,
            L7_EBX_RDSEED,
        ] {
            assert_eq!(e[1].ebx & bit, 0);
        }
        assert_eq!(e[1].ecx & L7_ECX_UMIP, 0);
        assert_eq!(e[2].eax, 0);
    }

    #[test]
    fn each_vcpu_gets_its_apic_id() {
        let base = CpuId::from_entries(&[entry(1, 0), entry(0xb, 0)]).unwrap();
        let c = for_vcpu(&base, 3);
        assert_eq!(c.as_slice()[0].ebx >> 24, 3);
        assert_eq!(c.as_slice()[1].edx, 3);
    }
}
