//! Cache prefetch hints for the nodes' loop: nodes step one after another and each node's state
//! is spread over several allocations, so the loop asks for the next nodes' memory early. Hints
//! only: they read nothing and change no result.

/// Prefetches every cache line of `item` itself (not what it points to); a hint that reads
/// nothing, so the caller need not have `item` in cache.
#[inline]
pub fn prefetch_struct<T>(item: &T) {
    prefetch_bytes(
        std::ptr::from_ref(item).cast::<u8>(),
        std::mem::size_of::<T>(),
    );
}

/// Prefetches every cache line of the elements of `items`.
#[inline]
pub fn prefetch_lines<T>(items: &[T]) {
    prefetch_bytes(items.as_ptr().cast::<u8>(), std::mem::size_of_val(items));
}

/// Prefetches the cache lines of `len` bytes from `p` (at most 8 KiB); a hint, so `p` may be
/// any address.
#[inline]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = p as usize & !63;
        let end = (p as usize).saturating_add(len.min(8192));
        let mut a = start;
        while a < end {
            // SAFETY: prefetching is a hint that never faults, whatever the address; these lie
            // within (or on the lines of) a live object.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(a as *const i8) };
            a += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}
