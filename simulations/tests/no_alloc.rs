//! Stepping nodes allocates nothing once they are warm: the inner loop of a 276-million
//! node-step run must not touch the allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use colo_sim::calibration::Coefficients;
use colo_sim::colo::ColoController;
use colo_sim::controller::{ActionCounts, Controller, StaticReservation};
use colo_sim::node::{Node, StepContext};
use colo_sim::trace::synthetic::{SyntheticParams, SyntheticTrace};
use colo_sim::trace::{TraceSource, VmSpec};
use colo_sim::vm::Vm;

struct Counting;

thread_local! {
    // Per thread: the tests of this file run in parallel.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn note() {
    // `try_with`: the allocator may be called while thread-locals are being torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every call is passed to the system allocator unchanged; counting has no effect on
// the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Steps `nodes` for `steps` steps from `first`; returns the allocations made meanwhile.
fn step_all<C: Controller>(
    ctrl: &C,
    nodes: &mut [Node<C::State>],
    trace: &SyntheticTrace,
    first: u32,
    steps: u32,
) -> u64 {
    let k = Coefficients::default();
    let scoring = colo_policy::scoring::ScoringParams::default();
    let cx = StepContext::new(&k, &scoring, 0.5, 10, Duration::from_millis(100), 8);
    let model = trace.online_model();
    let mut ends = Vec::with_capacity(4096);
    let mut counts = ActionCounts::default();
    let before = allocations();
    COUNTING.with(|c| c.set(true));
    for step in first..first + steps {
        for node in nodes.iter_mut() {
            let online = node.online_demand(step, Some(model), &[]);
            node.step(ctrl, &cx, step, &online, &mut ends, &mut counts);
        }
        ends.clear();
    }
    COUNTING.with(|c| c.set(false));
    allocations() - before
}

fn fleet<C: Controller>(ctrl: &C, trace: &SyntheticTrace) -> Vec<Node<C::State>> {
    let mut nodes: Vec<Node<C::State>> = trace
        .info()
        .nodes
        .iter()
        .enumerate()
        .map(|(i, s)| Node::new(u32::try_from(i).unwrap(), *s, ctrl))
        .collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        for j in 0..12u64 {
            let spec = VmSpec {
                request_millicores: 2_000,
                request_mib: 4096,
                vcpus: 2,
                cpu_millicores: 1_800,
                memory_mib: 3_000,
                io_kib_per_sec: if j % 3 == 0 { 100_000 } else { 0 },
                membw: 100,
                // Some finish during the measured steps.
                work_s: 300 + 600 * u32::try_from(j).unwrap(),
                ..VmSpec::default()
            };
            node.place(Vm::start(i as u64 * 100 + j, spec, 0, 0), ctrl);
        }
    }
    nodes
}

fn trace() -> SyntheticTrace {
    SyntheticTrace::new(&SyntheticParams {
        nodes: 30,
        days: 1.0,
        ..SyntheticParams::default()
    })
    .unwrap()
}

#[test]
fn warm_nodes_step_without_allocating() {
    let trace = trace();
    let ctrl = StaticReservation::default();
    let mut nodes = fleet(&ctrl, &trace);
    step_all(&ctrl, &mut nodes, &trace, 0, 5);
    let measured = step_all(&ctrl, &mut nodes, &trace, 5, 2_000);
    assert_eq!(measured, 0, "allocations while stepping warm nodes");
    // Sanity: the counter does count.
    COUNTING.with(|c| c.set(true));
    let v: Vec<u64> = Vec::with_capacity(8);
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert!(allocations() > 0);
}

#[test]
fn warm_nodes_running_the_policy_engine_step_without_allocating() {
    let trace = trace();
    let ctrl = ColoController::new(&colo_config::Policy::default(), true);
    let mut nodes = fleet(&ctrl, &trace);
    // The engine's and the sample's buffers grow on the first steps, and when the first
    // VMs leave (the engine keeps a spare list to re-order its state into).
    step_all(&ctrl, &mut nodes, &trace, 0, 200);
    let mut counts_before = 0;
    let measured = step_all(&ctrl, &mut nodes, &trace, 200, 2_000);
    for n in &nodes {
        counts_before += n.vms().len();
    }
    assert_eq!(measured, 0, "allocations while the engine steps warm nodes");
    assert!(counts_before < 30 * 12, "VMs finished meanwhile");
}
