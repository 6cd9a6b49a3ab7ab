//! Transparent huge pages for the simulator's heap.
//!
//! A large run keeps thousands of nodes, each spread over several heap buffers (its VMs, its
//! engine sample, the engine's per-VM state, its actions), and steps them one after another:
//! with 4 KiB pages every node's round touches pages the TLB no longer holds, and in a virtual
//! machine each such miss is a two-level page walk. On this host the walks showed as ~16 % of a
//! one-thread profile (the samples land on the prefetch instructions that start them), ~3 %
//! with the heap on 2 MiB pages. The host's THP mode is `madvise`, so nothing gets huge pages
//! unless asked: [`advise_heap`] asks, for the process's anonymous read-write mappings (the
//! `[heap]` and glibc's per-thread arenas), and collapses what is already in memory.
//!
//! It changes where memory lies, never what the simulation computes (the output bytes are the
//! same). Linux only; elsewhere, or on a kernel without `MADV_COLLAPSE` (before 6.1), it does
//! less or nothing and says so in its return value.

/// Size of a huge page on x86-64 (and the usual size on arm64).
const HUGE: usize = 2 << 20;

/// What [`advise_heap`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Advice {
    /// Bytes marked `MADV_HUGEPAGE` (later page faults there get huge pages).
    pub advised: usize,
    /// Bytes already in memory that `MADV_COLLAPSE` moved onto huge pages.
    pub collapsed: usize,
}

/// Marks the process's anonymous read-write mappings of at least one huge page (the heap and
/// glibc's thread arenas) for transparent huge pages and collapses their present pages onto
/// huge pages. Cheap to repeat (a mapping already on huge pages is skipped by the kernel);
/// call it again after the heap has grown. Errors (no `/proc`, an old kernel) are not fatal:
/// the run is the same, only slower; they leave `Advice` at what succeeded.
#[must_use]
pub fn advise_heap() -> Advice {
    let mut advice = Advice::default();
    #[cfg(target_os = "linux")]
    {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return advice;
        };
        for (start, end) in maps.lines().filter_map(anonymous_rw) {
            // Only whole huge pages inside the mapping.
            let (s, e) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
            if e <= s {
                continue;
            }
            let (p, len) = (s as *mut libc::c_void, e - s);
            // SAFETY: `[p, p + len)` lies within a mapping of this process that /proc just
            // listed as anonymous and read-write; MADV_HUGEPAGE and MADV_COLLAPSE change how it
            // is backed, never its contents or its protection. A mapping unmapped since the
            // read makes the call fail with ENOMEM, which is ignored.
            if unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) } == 0 {
                advice.advised += len;
                // SAFETY: as above.
                if unsafe { libc::madvise(p, len, libc::MADV_COLLAPSE) } == 0 {
                    advice.collapsed += len;
                }
            }
        }
    }
    advice
}

/// The address range of a `/proc/self/maps` line that is an anonymous read-write private
/// mapping (no file; the `[heap]`, but not the `[stack]` or other named kernel regions).
fn anonymous_rw(line: &str) -> Option<(usize, usize)> {
    let mut f = line.split_ascii_whitespace();
    let (range, perms, _offset, _dev, inode) =
        (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let name = f.next();
    if perms != "rw-p" || inode != "0" || !matches!(name, None | Some("[heap]")) {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    Some((
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_anonymous_read_write_mappings_are_taken() {
        assert_eq!(
            anonymous_rw("55d0c0a00000-55d0c4c00000 rw-p 00000000 00:00 0          [heap]"),
            Some((0x55d0_c0a0_0000, 0x55d0_c4c0_0000))
        );
        assert_eq!(
            anonymous_rw("7f0000000000-7f0004000000 rw-p 00000000 00:00 0 "),
            Some((0x7f00_0000_0000, 0x7f00_0400_0000))
        );
        assert_eq!(
            anonymous_rw("7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]"),
            None
        );
        assert_eq!(
            anonymous_rw("7f0000000000-7f0000200000 r--p 00000000 08:01 1234   /usr/lib/libc.so.6"),
            None
        );
        assert_eq!(
            anonymous_rw("7f0000000000-7f0004000000 ---p 00000000 00:00 0"),
            None
        );
        assert_eq!(anonymous_rw("garbage"), None);
    }

    #[test]
    fn advising_the_heap_keeps_its_contents() {
        // A few huge pages' worth of heap with a known pattern, advised and collapsed (or not,
        // on a kernel without THP): the contents are the same after.
        let v: Vec<u64> = (0u64..).take(3 * HUGE / 8).collect();
        let _ = advise_heap();
        assert!(v.iter().zip(0u64..).all(|(&x, i)| x == i));
    }
}
