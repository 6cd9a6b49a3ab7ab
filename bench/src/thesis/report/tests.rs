use std::path::PathBuf;

use super::*;
use crate::thesis::actions::{LoggedAction, PhaseActions};
use crate::thesis::pgbench::PhaseKind;

fn cfg() -> Config {
    let mut c = Config::quick(PathBuf::from("x"));
    c.buckets_mib = vec![8, 64];
    c.quotas_milli = vec![500];
    c.unthrottled = true;
    c
}

fn run(arm: Arm, rep: usize, p99: f64, units: f64) -> RunResult {
    RunResult {
        arm,
        rep,
        p50_ms: p99 / 3.0,
        p99_ms: p99,
        p999_ms: p99 * 2.0,
        txns: 1000,
        not_done: 0,
        units_per_s: units,
        offline_cpu: 0.5,
        steal: 0.0,
        load_before: 1.0,
        phases: Vec::new(),
        actions: Vec::new(),
        window_s: 20.0,
    }
}

fn acting(mut r: RunResult, squeeze_in_peak: bool) -> RunResult {
    r.phases = vec![
        PhaseActions {
            kind: PhaseKind::Peak,
            squeezes: usize::from(squeeze_in_peak),
            releases: 0,
        },
        PhaseActions {
            kind: PhaseKind::Trough,
            squeezes: 0,
            releases: 2,
        },
    ];
    r.actions = vec![LoggedAction {
        at_us: 1,
        direction: Direction::Squeeze,
        text: "set_vm_io_limit 1 bw=Some(1) iops=Some(1) [vm_io: sli 1.50 > 1.00 (service 0)]"
            .into(),
    }];
    r
}

const S8: Arm = Arm::Static {
    bucket_mib: 8,
    quota_milli: 500,
};
const S64: Arm = Arm::Static {
    bucket_mib: 64,
    quota_milli: 500,
};

#[test]
fn the_sweep_picks_the_fastest_setting_that_meets_the_goal_every_time() {
    let rs = vec![
        run(Arm::Alone, 0, 3.0, 0.0),
        run(S8, 0, 3.2, 1.0),
        run(S8, 1, 3.5, 1.2),
        // Faster, but one repetition over 1.2 × 3.0 = 3.6 ms: not eligible.
        run(S64, 0, 3.1, 5.0),
        run(S64, 1, 3.7, 5.0),
    ];
    let s: Vec<Summary> = cfg()
        .arms()
        .into_iter()
        .filter_map(|a| summarize(&rs, a))
        .collect();
    assert_eq!(best_static(&s, 3.0).map(|x| x.arm), Some(S8));
    // Nothing meets a tighter baseline; an unmeasured baseline picks nothing.
    assert!(best_static(&s, 2.0).is_none());
    assert!(best_static(&s, 0.0).is_none());
    assert!(best_static(&s, f64::NAN).is_none());
}

#[test]
fn goals_are_met_with_their_figures() {
    let rs = vec![
        run(Arm::Alone, 0, 3.0, 0.0),
        run(Arm::Container, 0, 300.0, 4.0),
        run(Arm::ContainerCapped, 0, 200.0, 3.0),
        run(S8, 0, 3.2, 1.0),
        acting(run(Arm::Colo, 0, 3.3, 2.0), true),
    ];
    let g = goals(&cfg(), &rs);
    assert!(g.contains("online p99 ≤ 1.20 × alone"), "{g}");
    assert!(g.contains(": 3.30 vs 3.00 ms = 1.10× — met"), "{g}");
    assert!(
        g.contains("best static static-8M-500m gives 1.00 units/s, (4) 2.00 units/s = 2.00× at p99 3.30 ms (meets the goal) — met"),
        "{g}"
    );
    assert!(g.contains("1 of 1 runs — met"), "{g}");
    assert!(
        g.contains("(1) p99 100.00× alone, 4.00 units/s; (2) p99 66.67× alone"),
        "{g}"
    );
    assert_eq!(g.lines().count(), 4, "one line per goal: {g}");
}

#[test]
fn goals_not_met_say_so() {
    let rs = vec![
        run(Arm::Alone, 0, 3.0, 0.0),
        run(S8, 0, 3.2, 1.9),
        acting(run(Arm::Colo, 0, 4.0, 2.0), false),
    ];
    let g = goals(&cfg(), &rs);
    assert!(g.contains("= 1.33× — NOT met"), "{g}");
    assert!(g.contains("(misses the goal) — NOT met"), "{g}");
    assert!(g.contains("0 of 1 runs — NOT met"), "{g}");
    assert!(
        g.contains("(1) and (2) show what a best-effort container does — NOT measured"),
        "{g}"
    );
}

#[test]
fn no_goal_rests_on_a_zero() {
    // alone measured nothing (p99 0): no ratio at all.
    let rs = vec![
        run(Arm::Alone, 0, 0.0, 0.0),
        acting(run(Arm::Colo, 0, 3.0, 2.0), true),
    ];
    let g = goals(&cfg(), &rs);
    assert!(g.contains("1.20 × alone (PostgreSQL; the memory-sensitive service is not in this benchmark yet) — NOT measured (alone"), "{g}");
    assert!(!g.contains("inf") && !g.contains("NaN"), "{g}");
    // The best static meets the goal at 0 units/s: printed as such, not a denominator.
    let rs = vec![
        run(Arm::Alone, 0, 3.0, 0.0),
        run(S8, 0, 3.0, 0.0),
        acting(run(Arm::Colo, 0, 3.1, 2.0), true),
    ];
    let g = goals(&cfg(), &rs);
    assert!(
        g.contains("meets the goal at 0 units/s, so no ratio"),
        "{g}"
    );
    assert!(!g.contains("inf") && !g.contains("NaN"), "{g}");
    // No static setting meets it: the unthrottled VMs are the reference, unless they did 0.
    let rs = vec![
        run(Arm::Alone, 0, 3.0, 0.0),
        run(S8, 0, 9.0, 1.0),
        run(Arm::Unthrottled, 0, 50.0, 0.0),
        acting(run(Arm::Colo, 0, 3.1, 2.0), true),
    ];
    let g = goals(&cfg(), &rs);
    assert!(g.contains("did 0 units/s: no reference"), "{g}");
    let rs = vec![
        run(Arm::Alone, 0, 3.0, 0.0),
        run(S8, 0, 9.0, 1.0),
        run(Arm::Unthrottled, 0, 50.0, 4.0),
        acting(run(Arm::Colo, 0, 3.1, 2.0), true),
    ];
    let g = goals(&cfg(), &rs);
    assert!(
        g.contains("(4) 2.00 of 4.00 units/s = 50 % at p99 3.10 ms — met"),
        "{g}"
    );
}

#[test]
fn the_table_lists_each_measured_arm_and_the_reasons() {
    let rs = vec![
        run(Arm::Alone, 0, 3.0, 0.0),
        acting(run(Arm::Colo, 0, 3.3, 2.0), true),
    ];
    let t = table(&cfg(), &rs, Duration::from_secs(60));
    assert!(t.contains("| alone | 1 | 1.00 | 3.00 |"), "{t}");
    assert!(t.contains("| (4) VMs under colo | 1 |"), "{t}");
    assert!(!t.contains("(1) containers"), "{t}");
    assert!(
        t.contains("best setting meeting p99 ≤ 1.20 × alone in every repetition: none"),
        "{t}"
    );
    assert!(t.contains("1 × Squeeze vm_io: sli"), "{t}");
}
