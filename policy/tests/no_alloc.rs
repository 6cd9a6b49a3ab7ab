//! Once its buffers have grown, `Engine::step` allocates nothing — the simulator calls it
//! hundreds of millions of times. Counted with a global allocator over a history that runs
//! every rule (squeeze, throttle, pause, evict, release). Only the test's own thread is counted:
//! the test harness's threads allocate now and then on a loaded host.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use colo_policy::Engine;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread whose allocations are counted.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // try_with: the slot may be gone while a thread exits; such a thread is not counted.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn stepping_allocates_nothing_after_warm_up() {
    let mut engine = Engine::new(&colo_config::Policy::default());
    let mut s = common::node(3, 8);
    let mut out = Vec::with_capacity(64);
    let mut next_id = 1_000;
    let period = Duration::from_millis(500);
    let mut kinds = std::collections::HashSet::new();
    // Warm up through every phase so the buffers reach their size.
    for i in 0..2_000 {
        common::advance(&mut s, i, period);
        engine.step(&s, &mut out);
        common::apply(&mut s, &out, &mut next_id);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTED.with(|c| c.set(true));
    let mut actions = 0usize;
    let mut seen = [false; 9];
    for i in 2_000..20_000 {
        common::advance(&mut s, i, period);
        engine.step(&s, &mut out);
        actions += out.len();
        for a in &out {
            let k = [
                "set_offline_cpu_quota",
                "set_vm_vcpu_quota",
                "set_vcpu_sched_idle",
                "set_vm_io_limit",
                "set_offline_io_limit",
                "set_vm_memory_limit",
                "pause_vm",
                "resume_vm",
                "evict_vm",
            ]
            .iter()
            .position(|n| *n == a.kind());
            if let Some(k) = k {
                seen[k] = true;
            }
        }
        common::apply(&mut s, &out, &mut next_id);
    }
    COUNTED.with(|c| c.set(false));
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    kinds.extend(seen.iter().enumerate().filter(|(_, s)| **s).map(|(k, _)| k));
    assert!(
        actions > 1_000,
        "the history should exercise the rules ({actions} actions)"
    );
    assert!(kinds.len() >= 8, "action kinds seen: {seen:?}");
    assert_eq!(allocs, 0, "{allocs} allocations in 18,000 steps");
}
