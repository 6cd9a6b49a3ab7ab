//! Every VM attempt is accounted for exactly once: submitted = finished + failed + OOM-killed
//! + preempted + running + pending; and jobs only finish when all their VMs did.

mod common;

use colo_sim::cluster::SimConfig;
use colo_sim::trace::synthetic::SyntheticParams;
use common::*;

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
