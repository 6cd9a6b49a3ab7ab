//! The node's report to colo-scheduler, built by the QoS loop from its readings with
//! colo-policy's scoring (so the agent reports exactly what the scheduler and the simulator
//! compute), and where the loop hands it over ([`ReportSink`], the reporter's side).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use colo_policy::scoring::{
    Admission, InterferenceSignals, Resources, ScoringParams, batch_admission, headroom,
    interference_score, reclaimable,
};
use colo_proto::report::{self, NodeReport};

/// Where the loop hands each new report (the reporter, when a colo-scheduler is configured).
/// Publishing never blocks.
pub trait ReportSink: std::fmt::Debug + Send + Sync {
    /// Hands over the node's current state.
    fn publish(&self, report: NodeReport);
}

/// Raw measurements of a node, from which [`node_report`] builds the snapshot to publish.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInputs {
    /// The node's name as the cluster scheduler knows it (Kubernetes node name, YARN host).
    pub node_name: String,
    /// CPU and memory of the node.
    pub capacity: Resources,
    /// What online services use now.
    pub online_usage: Resources,
    /// What offline (batch) jobs use now.
    pub offline_usage: Resources,
    /// Interference signals of the online services.
    pub signals: InterferenceSignals,
    /// Offline jobs by state name (`running`, `paused`, ...).
    pub jobs_by_state: HashMap<String, u32>,
    /// The sandbox kinds the node runs (`workload`, `container`, ...).
    pub sandboxes: Vec<String>,
}

/// Builds the snapshot to publish from raw measurements with colo-policy's scoring: batch budget
/// (capacity − online usage − headroom), interference score and components, and the batch
/// verdict with hysteresis (`previous` is the verdict of the last snapshot; a fresh agent starts
/// from `Admission::Accepting`). Returns the snapshot and the new verdict to keep.
#[must_use]
pub fn node_report(
    inputs: &NodeInputs,
    params: &ScoringParams,
    previous: Admission,
) -> (NodeReport, Admission) {
    let budget = reclaimable(
        inputs.capacity,
        inputs.online_usage,
        headroom(inputs.capacity, &params.headroom),
    );
    let score = interference_score(&inputs.signals, &params.interference);
    let admission = batch_admission(score.score, previous, &params.admission);
    let res = |r: Resources| report::Resources {
        cpu_millicores: r.cpu_millicores,
        memory_bytes: r.memory_bytes,
    };
    let report = NodeReport {
        node_name: inputs.node_name.clone(),
        seq: 0,
        timestamp_unix_ms: unix_ms(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        capacity: Some(res(inputs.capacity)),
        online_usage: Some(res(inputs.online_usage)),
        offline_usage: Some(res(inputs.offline_usage)),
        reclaimable: Some(res(budget)),
        interference: Some(report::Interference {
            score: score.score,
            run_delay: score.run_delay,
            psi: score.psi,
            sli: score.sli,
        }),
        jobs_by_state: inputs.jobs_by_state.clone(),
        agent_start_unix_ms: 0,
        refuses_batch: admission == Admission::Refusing,
        sandboxes: inputs.sandboxes.clone(),
    };
    (report, admission)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GIB: u64 = 1 << 30;

    pub(crate) fn inputs(score_psi: f64) -> NodeInputs {
        NodeInputs {
            node_name: "n1".into(),
            capacity: Resources::new(16_000, 64 * GIB),
            online_usage: Resources::new(6_000, 20 * GIB),
            offline_usage: Resources::new(2_000, 8 * GIB),
            signals: InterferenceSignals {
                psi_ms_per_s: score_psi,
                ..InterferenceSignals::default()
            },
            jobs_by_state: HashMap::from([("running".to_owned(), 2)]),
            sandboxes: vec!["workload".into(), "container".into()],
        }
    }

    #[test]
    fn report_carries_the_shared_scoring() {
        let p = ScoringParams::default();
        let (r, a) = node_report(&inputs(0.0), &p, Admission::Accepting);
        assert_eq!(a, Admission::Accepting);
        assert!(!r.refuses_batch);
        let budget = r.reclaimable.unwrap();
        assert_eq!(budget.cpu_millicores, 16_000 - 6_000 - 1_600);
        assert_eq!(r.interference.unwrap().score, 0.0);
        assert_eq!(r.jobs_by_state["running"], 2);
        assert_eq!(r.agent_version, env!("CARGO_PKG_VERSION"));

        // Score = 0.4 × (0.3 × c / 0.7) + 0.6 × c ≈ 0.771 × c for a PSI component c.
        // PSI 400 ms/s saturates it: score ≈ 77 > 70 → refuse.
        let (hot, a) = node_report(&inputs(400.0), &p, Admission::Accepting);
        assert_eq!(a, Admission::Refusing);
        assert!(hot.refuses_batch);
        // PSI 100 ms/s: c ≈ 47, score ≈ 37 < 50: a refusing node accepts again.
        let (_, a) = node_report(&inputs(100.0), &p, Admission::Refusing);
        assert_eq!(a, Admission::Accepting);
        // PSI 150 ms/s: score ≈ 57, inside the band: stays as it was.
        let (_, a) = node_report(&inputs(150.0), &p, Admission::Refusing);
        assert_eq!(a, Admission::Refusing);
        let (_, a) = node_report(&inputs(150.0), &p, Admission::Accepting);
        assert_eq!(a, Admission::Accepting);
    }
}
