//! Loading the kernel and preparing how each vCPU enters it.
//!
//! Three entry protocols, chosen from the kernel file:
//! * **colo** (ELF with a `COLO` note, the workload guest): every vCPU starts in 64-bit mode at
//!   the note's entry with CR3 = the guest's own page tables, RDI = vCPU index, RSI = vCPU count,
//!   RBX = `hvm_start_info` (command line, memory map). No INIT/SIPI, nothing emulated at start.
//! * **PVH** (ELF with a Xen PHYS32_ENTRY note, e.g. a Linux `vmlinux` with `CONFIG_PVH`): the
//!   boot vCPU starts in 32-bit protected mode with EBX = `hvm_start_info`; the others wait for
//!   INIT/SIPI from the guest.
//! * **Linux 64-bit boot protocol** (bzImage, or an ELF without those notes): the boot vCPU starts
//!   in 64-bit mode with RSI = the zero page and identity-mapped page tables built here.
//!
//! Linux guests (PVH and the 64-bit protocol) with more than one vCPU also get an MP table
//! (`mptable.rs`): the other vCPUs wait in KVM's in-kernel LAPIC until the guest sends them
//! INIT/SIPI.

mod mptable;
mod notes;
mod regs;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use linux_loader::loader::{Elf, KernelLoader, bzimage::BzImage};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub use notes::{ColoNote, NotesError, read_notes};
pub use regs::setup_vcpu;

use super::layout::{
    CMDLINE, CMDLINE_MAX, HIMEM_START, MAX_E820, MMIO_GAP_START, PVH_INFO, PVH_MEMMAP, PVH_MODLIST,
    ZERO_PAGE, e820_map,
};

/// Errors loading the kernel; all of them are bad input.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file cannot be opened.
    #[error("kernel {path}: {source}")]
    KernelOpen {
        /// The kernel path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Neither an ELF nor a bzImage.
    #[error("kernel {0}: not an ELF (vmlinux with a PVH note) or bzImage file")]
    KernelFormat(PathBuf),
    /// An ELF, but not one colo can boot.
    #[error("kernel {path}: {source}")]
    KernelElf {
        /// The kernel path.
        path: PathBuf,
        /// What is wrong.
        source: NotesError,
    },
    /// linux-loader refused the image.
    #[error("kernel {path}: cannot load it: {source}")]
    KernelLoad {
        /// The kernel path.
        path: PathBuf,
        /// What linux-loader said.
        source: linux_loader::loader::Error,
    },
    /// The initrd cannot be read or does not fit.
    #[error("initrd {path}: {why}")]
    Initrd {
        /// The initrd path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The command line is too long or holds a NUL.
    #[error("--cmdline is {len} bytes; at most {CMDLINE_MAX} bytes without NUL characters")]
    Cmdline {
        /// Its length.
        len: usize,
    },
    /// The kernel wants more vCPUs than it supports.
    #[error("the guest {path} supports at most {max} vCPUs; lower --vcpus")]
    TooManyVcpus {
        /// The kernel path.
        path: PathBuf,
        /// Its limit.
        max: u32,
    },
    /// Writing boot data into guest memory failed (memory too small).
    #[error("guest memory is too small for the boot data at {addr:#x}; raise --memory-mib")]
    GuestMemory {
        /// Where the write failed.
        addr: u64,
    },
}

/// How the vCPUs enter the loaded kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryProtocol {
    /// colo's workload-guest protocol (every vCPU in 64-bit mode).
    Colo(ColoNote),
    /// PVH: boot vCPU in 32-bit protected mode at `entry`.
    Pvh {
        /// 32-bit entry point.
        entry: u64,
    },
    /// Linux 64-bit boot protocol: boot vCPU in 64-bit mode at `entry`, RSI = zero page.
    Linux64 {
        /// 64-bit entry point.
        entry: u64,
    },
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootConfig<'a> {
    /// Kernel image (ELF or bzImage).
    pub kernel: &'a Path,
    /// Optional initrd.
    pub initrd: Option<&'a Path>,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Appended to the command line of Linux kernels (not of colo guests): device
    /// announcements such as `virtio_mmio.device=4K@0xd0000000:5`.
    pub linux_cmdline_extra: &'a str,
    /// Guest RAM size, bytes.
    pub memory: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
}

/// Loads the kernel, command line, initrd and boot structures into `mem`.
pub fn load(mem: &GuestMemoryMmap, cfg: &BootConfig<'_>) -> Result<EntryProtocol, BootError> {
    let kpath = cfg.kernel.to_path_buf();
    let mut file = File::open(cfg.kernel).map_err(|source| BootError::KernelOpen {
        path: kpath.clone(),
        source,
    })?;
    if cfg.cmdline.len() > CMDLINE_MAX || cfg.cmdline.contains('\0') {
        return Err(BootError::Cmdline {
            len: cfg.cmdline.len(),
        });
    }
    let mut magic = [0u8; 4];
    let is_elf = file.read_exact_at(&mut magic, 0).is_ok() && magic == *b"\x7fELF";
    let mut hdrs = [0u8; 4];
    let is_bzimage = !is_elf && file.read_exact_at(&mut hdrs, 0x202).is_ok() && hdrs == *b"HdrS";
    let load_err = |source| BootError::KernelLoad {
        path: kpath.clone(),
        source,
    };

    let protocol = if is_elf {
        let notes = read_notes(&file).map_err(|source| BootError::KernelElf {
            path: kpath.clone(),
            source,
        })?;
        let loaded =
            Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(load_err)?;
        match (notes.colo, notes.pvh_entry) {
            (Some(colo), _) => {
                if cfg.vcpus > colo.max_vcpus {
                    return Err(BootError::TooManyVcpus {
                        path: kpath,
                        max: colo.max_vcpus,
                    });
                }
                EntryProtocol::Colo(colo)
            }
            (None, Some(entry)) => EntryProtocol::Pvh { entry },
            (None, None) => EntryProtocol::Linux64 {
                entry: loaded.kernel_load.0,
            },
        }
    } else if is_bzimage {
        let loaded = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
            .map_err(load_err)?;
        EntryProtocol::Linux64 {
            entry: loaded.kernel_load.0 + 0x200,
        }
    } else {
        return Err(BootError::KernelFormat(kpath));
    };

    let mut cmdline = cfg.cmdline.to_string();
    if !matches!(protocol, EntryProtocol::Colo(_)) && !cfg.linux_cmdline_extra.is_empty() {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(cfg.linux_cmdline_extra);
    }
    if cmdline.len() > CMDLINE_MAX {
        return Err(BootError::Cmdline { len: cmdline.len() });
    }
    write_bytes(mem, CMDLINE, cmdline.as_bytes())?;
    write_bytes(mem, CMDLINE + cmdline.len() as u64, &[0])?;
    let initrd = match cfg.initrd {
        Some(p) => Some(load_initrd(mem, p, cfg.memory)?),
        None => None,
    };
    if !matches!(protocol, EntryProtocol::Colo(_)) && cfg.vcpus > 1 {
        // How Linux, without ACPI, learns of the other vCPUs and of the IOAPIC's pins. A
        // one-vCPU guest gets none and stays on the 8259 PIC: on KVM-PVM hosts a Linux guest
        // routed through the IOAPIC stalls for minutes (docs/vmm.md, "SMP: the MP table").
        mptable::write(mem, cfg.vcpus)?;
    }
    match protocol {
        EntryProtocol::Colo(_) | EntryProtocol::Pvh { .. } => {
            write_pvh_info(mem, cfg.memory, initrd)?
        }
        EntryProtocol::Linux64 { .. } => {
            let header = if is_bzimage {
                Some(read_setup_header(&file, &kpath)?)
            } else {
                None
            };
            write_zero_page(mem, cfg.memory, cmdline.len(), header.as_deref(), initrd)?;
            regs::write_boot_page_tables(mem)?;
        }
    }
    Ok(protocol)
}

/// Loads the initrd page-aligned at the top of low RAM; returns (address, size).
fn load_initrd(mem: &GuestMemoryMmap, path: &Path, memory: u64) -> Result<(u64, u64), BootError> {
    let err = |why: String| BootError::Initrd {
        path: path.to_path_buf(),
        why,
    };
    let mut file = File::open(path).map_err(|e| err(e.to_string()))?;
    let size = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let top = memory.min(MMIO_GAP_START);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= 16 << 20)
        .ok_or_else(|| {
            err(format!(
                "{size} bytes do not fit in guest memory; raise --memory-mib"
            ))
        })?;
    let len = usize::try_from(size).map_err(|_| err("too large".into()))?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| err(e.to_string()))?;
    Ok((addr, size))
}

fn write_bytes(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8]) -> Result<(), BootError> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|_| BootError::GuestMemory { addr })
}

/// Writes `hvm_start_info` (version 1: with a memory map) and, with an initrd, one module.
fn write_pvh_info(
    mem: &GuestMemoryMmap,
    memory: u64,
    initrd: Option<(u64, u64)>,
) -> Result<(), BootError> {
    let map = e820_map(memory);
    let mut table = Vec::with_capacity(MAX_E820 * 24);
    for (start, size, kind) in map.iter().take(MAX_E820) {
        table.extend_from_slice(&start.to_le_bytes());
        table.extend_from_slice(&size.to_le_bytes());
        table.extend_from_slice(&kind.to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
    }
    write_bytes(mem, PVH_MEMMAP, &table)?;
    let mut info = [0u8; 56];
    info[0..4].copy_from_slice(&0x336e_c578u32.to_le_bytes());
    info[4..8].copy_from_slice(&1u32.to_le_bytes());
    if let Some((addr, size)) = initrd {
        info[12..16].copy_from_slice(&1u32.to_le_bytes());
        info[16..24].copy_from_slice(&PVH_MODLIST.to_le_bytes());
        let mut module = [0u8; 32];
        module[0..8].copy_from_slice(&addr.to_le_bytes());
        module[8..16].copy_from_slice(&size.to_le_bytes());
        write_bytes(mem, PVH_MODLIST, &module)?;
    }
    info[24..32].copy_from_slice(&CMDLINE.to_le_bytes());
    info[40..48].copy_from_slice(&PVH_MEMMAP.to_le_bytes());
    let entries = u32::try_from(map.len().min(MAX_E820)).unwrap_or(0);
    info[48..52].copy_from_slice(&entries.to_le_bytes());
    write_bytes(mem, PVH_INFO, &info)
}

/// The bzImage setup header (file bytes 0x1f1 up to the end the header states).
fn read_setup_header(file: &File, path: &Path) -> Result<Vec<u8>, BootError> {
    let mut len = [0u8; 1];
    file.read_exact_at(&mut len, 0x201)
        .map_err(|_| BootError::KernelFormat(path.to_path_buf()))?;
    let end = 0x202 + usize::from(len[0]);
    let mut hdr = vec![0u8; end - 0x1f1];
    file.read_exact_at(&mut hdr, 0x1f1)
        .map_err(|_| BootError::KernelFormat(path.to_path_buf()))?;
    Ok(hdr)
}

/// Writes the Linux zero page (`boot_params`): setup header, command line, e820, initrd.
fn write_zero_page(
    mem: &GuestMemoryMmap,
    memory: u64,
    cmdline_len: usize,
    header: Option<&[u8]>,
    initrd: Option<(u64, u64)>,
) -> Result<(), BootError> {
    let mut zp = vec![0u8; 4096];
    if let Some(h) = header {
        let n = h.len().min(0x290 - 0x1f1);
        zp[0x1f1..0x1f1 + n].copy_from_slice(&h[..n]);
    }
    zp[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    zp[0x202..0x206].copy_from_slice(b"HdrS");
    zp[0x210] = 0xff; // type_of_loader: undefined
    zp[0x211] |= 0x01; // loadflags: LOADED_HIGH
    if let Some((addr, size)) = initrd {
        zp[0x218..0x21c].copy_from_slice(&(addr as u32).to_le_bytes());
        zp[0x21c..0x220].copy_from_slice(&(size as u32).to_le_bytes());
    }
    zp[0x228..0x22c].copy_from_slice(&(CMDLINE as u32).to_le_bytes());
    zp[0x230..0x234].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    zp[0x238..0x23c].copy_from_slice(&(cmdline_len as u32).to_le_bytes());
    let map = e820_map(memory);
    zp[0x1e8] = map.len() as u8;
    for (i, (start, size, kind)) in map.iter().enumerate() {
        let at = 0x2d0 + i * 20;
        zp[at..at + 8].copy_from_slice(&start.to_le_bytes());
        zp[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
        zp[at + 16..at + 20].copy_from_slice(&kind.to_le_bytes());
    }
    write_bytes(mem, ZERO_PAGE, &zp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::{MemoryOptions, create};

    fn cfg<'a>(kernel: &'a Path, cmdline: &'a str) -> BootConfig<'a> {
        BootConfig {
            kernel,
            initrd: None,
            cmdline,
            linux_cmdline_extra: "",
            memory: 64 << 20,
            vcpus: 1,
        }
    }

    #[test]
    fn the_workload_guest_boots_with_the_colo_protocol() {
        let mem = create(64 << 20, MemoryOptions::default()).unwrap();
        let kernel = Path::new(crate::WORKLOAD_GUEST_PATH);
        let proto = load(&mem, &cfg(kernel, "cpu=1 exit=3")).unwrap();
        assert!(matches!(proto, EntryProtocol::Colo(_)));
        let magic: u32 = mem.read_obj(GuestAddress(PVH_INFO)).unwrap();
        assert_eq!(magic, 0x336e_c578);
        let mut line = [0u8; 13];
        mem.read_slice(&mut line, GuestAddress(CMDLINE)).unwrap();
        assert_eq!(&line, b"cpu=1 exit=3\0");
    }

    #[test]
    fn bad_kernels_are_named() {
        let mem = create(64 << 20, MemoryOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("kernel.txt");
        std::fs::write(&text, "hello").unwrap();
        let e = load(&mem, &cfg(&text, "")).unwrap_err().to_string();
        assert!(e.contains("not an ELF"), "{e}");
        let missing = dir.path().join("nope");
        let e = load(&mem, &cfg(&missing, "")).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("No such file"), "{e}");
        let long = "x".repeat(CMDLINE_MAX + 1);
        let kernel = Path::new(crate::WORKLOAD_GUEST_PATH);
        let e = load(&mem, &cfg(kernel, &long)).unwrap_err().to_string();
        assert!(e.contains("--cmdline"), "{e}");
    }
}
