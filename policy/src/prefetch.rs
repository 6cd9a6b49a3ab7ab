//! A cache prefetch hint for callers that step many engines in turn (see
//! [`crate::Engine::prefetch_vm_states`]).

/// Most bytes one hint covers: a node's VM states fit in it many times over.
const MOST_BYTES: usize = 8192;

/// Asks the CPU to load the cache lines of `items` (at most [`MOST_BYTES`]); reads nothing.
#[inline]
pub(crate) fn prefetch_slice<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = items.as_ptr() as usize & !63;
        let end =
            (items.as_ptr() as usize).saturating_add(std::mem::size_of_val(items).min(MOST_BYTES));
        for line in (first..end).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults, whatever the address; these
            // lines hold (or border) the live slice.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}
