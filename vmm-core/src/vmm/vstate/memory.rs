//! Guest RAM: anonymous host memory, lazily allocated unless prefaulted.

use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
    MmapRegion,
};

use crate::vmm::layout::ram_ranges;

/// Errors creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The host refused the mapping.
    #[error("cannot map {size} bytes of guest memory: {source}")]
    Map {
        /// Bytes asked for.
        size: u64,
        /// What vm-memory said.
        source: vm_memory::mmap::MmapRegionError,
    },
    /// The regions overlap or are unordered (a bug in the layout).
    #[error("guest memory layout is invalid: {0}")]
    Layout(String),
    /// Prefaulting failed (usually: the memory cgroup limit is below the guest size).
    #[error(
        "cannot prefault guest memory ({source}); is the memory limit of the VMM's cgroup below --memory-mib?"
    )]
    Prefault {
        /// What madvise said.
        source: std::io::Error,
    },
}

/// How guest memory is backed.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryOptions {
    /// Make every page resident at start (MADV_POPULATE_WRITE).
    pub prefault: bool,
    /// Ask for transparent huge pages (MADV_HUGEPAGE).
    pub hugepages: bool,
}

/// Maps `size` bytes of guest RAM (private anonymous memory, MAP_NORESERVE).
pub fn create(size: u64, opts: MemoryOptions) -> Result<GuestMemoryMmap, MemoryError> {
    let mut regions = Vec::new();
    for (start, len) in ram_ranges(size) {
        let len_usize = usize::try_from(len).map_err(|_| MemoryError::Layout("size".into()))?;
        let mapping =
            MmapRegion::new(len_usize).map_err(|source| MemoryError::Map { size, source })?;
        let addr = mapping.as_ptr().cast::<libc::c_void>();
        if opts.hugepages {
            // SAFETY: madvise on a mapping we own; advice only, no memory is touched.
            unsafe { libc::madvise(addr, len_usize, libc::MADV_HUGEPAGE) };
        }
        if opts.prefault {
            prefault(addr, len_usize)?;
        }
        regions.push(
            GuestRegionMmap::new(mapping, GuestAddress(start))
                .ok_or_else(|| MemoryError::Layout(format!("region at {start:#x} overflows")))?,
        );
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| MemoryError::Layout(e.to_string()))
}

/// Makes every page of the mapping resident and writable.
fn prefault(addr: *mut libc::c_void, len: usize) -> Result<(), MemoryError> {
    // SAFETY: madvise on a mapping we own; MADV_POPULATE_WRITE only faults pages in.
    let rc = unsafe { libc::madvise(addr, len, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(MemoryError::Prefault { source: err });
    }
    // Kernels before 5.14 lack MADV_POPULATE_WRITE: touch one byte per page instead.
    let base = addr.cast::<u8>();
    for off in (0..len).step_by(4096) {
        // SAFETY: `off < len`, inside the mapping we own; nothing else uses it yet.
        unsafe { std::ptr::write_volatile(base.add(off), 0) };
    }
    Ok(())
}

/// Bytes of guest RAM resident in host memory (mincore over every region).
pub fn resident_bytes(mem: &GuestMemoryMmap) -> u64 {
    let page = 4096usize;
    let mut total = 0u64;
    let mut vec = Vec::new();
    for region in mem.iter() {
        let Ok(len) = usize::try_from(region.len()) else {
            continue;
        };
        let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        let pages = len.div_ceil(page);
        vec.clear();
        vec.resize(pages, 0u8);
        // SAFETY: mincore reads the page-table state of our own mapping of `len` bytes and
        // writes one byte per page into `vec`, which holds `pages` bytes.
        let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if rc == 0 {
            total += vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page as u64;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn memory_is_lazy_and_prefault_makes_it_resident() {
        let lazy = create(16 << 20, MemoryOptions::default()).unwrap();
        assert!(resident_bytes(&lazy) < (1 << 20));
        lazy.write_obj(1u64, GuestAddress(8 << 20)).unwrap();
        assert!(resident_bytes(&lazy) >= 4096);
        let full = create(
            16 << 20,
            MemoryOptions {
                prefault: true,
                hugepages: false,
            },
        )
        .unwrap();
        assert_eq!(resident_bytes(&full), 16 << 20);
    }
}
