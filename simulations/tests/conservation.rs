//! Every VM attempt is accounted for exactly once: submitted = finished + failed + OOM-killed
//! + preempted + running + pending; and jobs only finish when all their VMs did.

mod common;

use colo_sim::cluster::SimConfig;
use colo_sim::compare::{self, Mode, ModeSettings};
use colo_sim::trace::synthetic::SyntheticParams;
use common::*;

#[test]
fn vm_attempts_are_conserved_in_colo_modes_with_preemption() {
    // A policy that evicts early for memory makes colo preempt.
    let policy = colo_config::parse_policy(&[colo_config::Source::new(
        "evict-early.yaml",
        "apiVersion: colo/v1\nkind: Policy\nmemory:\n  evict_at: 45%\n  stop_at: 40%\n",
    )])
    .unwrap();
    let settings = ModeSettings {
        policy: Some(policy),
        ..settings()
    };
    let results = compare::compare(
        synthetic(&small(21)),
        &SimConfig::default(),
        &[Mode::Colo, Mode::Observe],
        &settings,
        &(),
    )
    .unwrap();
    let (colo, observe) = (&results[0].summary, &results[1].summary);
    assert!(colo.vms.conserved(), "{:?}", colo.vms);
    assert!(observe.vms.conserved(), "{:?}", observe.vms);
    assert!(colo.vms.preempted > 0, "{:?}", colo.vms);
    assert_eq!(colo.actions.evict, colo.vms.preempted);
    // Observe mode decides (it would evict) but changes nothing.
    assert!(observe.actions.total() > 0);
    assert_eq!(observe.vms.preempted, 0);
}

#[test]
fn vm_attempts_are_conserved_in_every_baseline() {
    let p = SyntheticParams {
        vm_failure: 0.2,
        ..small(3)
    };
    for r in run(&p, &BASELINES, &SimConfig::default()) {
        let s = &r.summary;
        let v = &s.vms;
        assert!(v.conserved(), "{}: {v:?}", s.mode);
        assert!(
            v.finished > 0 && v.failed > 0 && v.pending > 0,
            "{}: {v:?}",
            s.mode
        );
        assert!(s.jobs_finished <= s.jobs_submitted);
        let finished_in_series: u64 = r.series.iter().map(|b| b.vms_finished).sum();
        assert_eq!(finished_in_series, v.finished);
    }
}
