//! Unit tests of one node's step.

use colo_policy::scoring::ScoringParams;

use super::*;
use crate::calibration::Coefficients;
use crate::controller::{Admission, NoColocation};
use crate::trace::VmSpec;

const GIB: u64 = 1 << 30;

/// A controller for these tests: on its first tick it applies `act` to every VM; later
/// ticks change nothing.
struct Scripted {
    act: fn(&mut Vm),
}

impl Controller for Scripted {
    type State = bool;
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn admission(&self) -> Admission {
        Admission::Reported
    }
    fn init(&self, _: &NodeSpec) -> bool {
        false
    }
    fn initial_group(&self, _: &NodeSpec) -> GroupLimits {
        GroupLimits::default()
    }
    fn admit(&self, _: &mut bool, _: &mut Vm) {}
    fn tick(&self, done: &mut bool, view: &mut TickView<'_>, c: &mut ActionCounts) -> bool {
        if *done {
            return false;
        }
        *done = true;
        for vm in view.vms.iter_mut() {
            (self.act)(vm);
            c.pause += 1;
        }
        true
    }
}

fn spec(cores: u32, memory: u64) -> NodeSpec {
    NodeSpec {
        cpu_millicores: cores * 1000,
        memory_bytes: memory,
        disk_bytes_per_sec: 200_000_000,
        batch_pool: false,
    }
}

fn vm(id: u64, cpu_millicores: u32, memory_mib: u32) -> Vm {
    Vm::start(
        id,
        VmSpec {
            request_millicores: cpu_millicores,
            request_mib: memory_mib,
            vcpus: 2,
            cpu_millicores,
            memory_mib,
            work_s: 1_000,
            ..VmSpec::default()
        },
        0,
        0,
    )
}

fn step<C: Controller>(
    node: &mut Node<C::State>,
    ctrl: &C,
    online: OnlineDemand,
) -> (StepSample, Vec<VmEnd>, ActionCounts) {
    let k = Coefficients::default();
    let scoring = ScoringParams::default();
    let cx = StepContext::new(&k, &scoring, 0.5, 10, Duration::from_millis(100), 8);
    let mut ends = Vec::new();
    let mut counts = ActionCounts::default();
    let s = node.step(ctrl, &cx, 3, &online, &mut ends, &mut counts);
    (s, ends, counts)
}

#[test]
fn the_schedulers_copy_of_a_report_counts_a_placement_as_the_node_does() {
    let mut n = Node::new(0, spec(8, 32 * GIB), &NoColocation);
    let (_, _, _) = step(&mut n, &NoColocation, OnlineDemand::default());
    let mut copy = n.report;
    let v = vm(1, 1_500, 2048);
    copy.reserve(v.spec.request());
    assert!(n.place(v, &NoColocation));
    assert_eq!(copy, n.report);
}

#[test]
fn node_memory_overflow_kills_the_largest_offline_vm() {
    let mut n = Node::new(0, spec(2, 8 * GIB), &NoColocation);
    assert!(n.place(vm(1, 500, 1024), &NoColocation));
    assert!(n.place(vm(2, 500, 2048), &NoColocation));
    let online = OnlineDemand {
        cpu: 0.3,
        memory_bytes: 6 * GIB,
        io_bytes_per_sec: 0.0,
    };
    let (_, ends, _) = step(&mut n, &NoColocation, online);
    assert_eq!(ends.len(), 1);
    assert_eq!((ends[0].vm.id, ends[0].outcome), (2, Outcome::OomKilled));
    assert_eq!(ends[0].at_s, 40);
    assert_eq!(n.offline_memory, 1 << 30);
}

#[test]
fn a_squeeze_counts_only_the_time_before_it() {
    let ctrl = Scripted {
        act: |vm| vm.load.paused = true,
    };
    let mut n = Node::new(0, spec(2, 8 * GIB), &ctrl);
    n.place(vm(1, 2_000, 1024), &ctrl);
    let online = OnlineDemand {
        cpu: 0.3,
        memory_bytes: GIB,
        io_bytes_per_sec: 0.0,
    };
    let (s, ends, counts) = step(&mut n, &ctrl, online);
    assert!(ends.is_empty());
    assert_eq!(counts.pause, 1);
    // 100 ms beside a same-weight hog (3.85 ms), then 9.9 s alone (0.23 ms).
    assert_eq!(s.violation_ms, 100);
    assert_eq!(s.p99_us, 266, "(0.1 × 3850 + 9.9 × 230) / 10");
    assert!((n.vms[0].remaining_s - (1_000.0 - 0.1 * 0.85)).abs() < 1e-3);
    assert_eq!(std::mem::size_of::<Vm>(), 128);
    assert!(
        std::mem::offset_of!(Vm, over_limit) < 64,
        "hot fields in one line"
    );
}

#[test]
fn evicted_and_over_limit_vms_leave_with_their_outcome() {
    let ctrl = Scripted {
        act: |vm| {
            if vm.id == 1 {
                vm.evicted = true;
            } else {
                vm.set_memory_limit(1 << 20);
            }
        },
    };
    let mut n = Node::new(0, spec(8, 32 * GIB), &ctrl);
    n.place(vm(1, 1_000, 1024), &ctrl);
    n.place(vm(2, 1_000, 1024), &ctrl);
    let (_, ends, _) = step(&mut n, &ctrl, OnlineDemand::default());
    let mut got: Vec<(u64, Outcome)> = ends.iter().map(|e| (e.vm.id, e.outcome)).collect();
    got.sort_by_key(|g| g.0);
    assert_eq!(got, [(1, Outcome::Preempted), (2, Outcome::OomKilled)]);
    assert!(n.vms.is_empty());
    assert_eq!(n.requested, Resources::ZERO);
    assert_eq!(n.report.free_slots as usize, MAX_VMS_PER_NODE);
}

#[test]
fn finished_work_completes_and_reports_free_capacity() {
    let mut n = Node::new(0, spec(8, 32 * GIB), &NoColocation);
    let mut v = vm(1, 1_000, 1024);
    v.remaining_s = 5.0;
    n.place(v, &NoColocation);
    let (_, ends, _) = step(&mut n, &NoColocation, OnlineDemand::default());
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].outcome, Outcome::Finished);
    // Reported: capacity − online − 10 % headroom, nothing requested.
    assert_eq!(
        n.report.state.reclaimable.cpu_millicores, 0,
        "online node, no colocation"
    );
    assert!(!n.report.eligible);
}
