//! The simulator places offline VMs with the very functions colo-scheduler's extender runs:
//! for the same node report both reach the same verdict and score, and a change of the scoring
//! policy changes both the scheduler's answer and the simulator's result.

mod common;

use std::time::{Duration, Instant};

use colo_policy::scoring::{Resources, ScoringParams};
use colo_proto::report::{self, Interference, NodeReport};
use colo_scheduler::SchedulerConfig;
use colo_scheduler::http_client::HttpConnection;
use colo_sim::calibration::Coefficients;
use colo_sim::cluster::{self, SimConfig};
use colo_sim::compare::{self, Mode, ModeSettings};
use colo_sim::controller::{ActionCounts, NoColocation};
use colo_sim::node::{Node, StepContext};
use colo_sim::trace::{NodeSpec, VmSpec};
use colo_sim::vm::Vm;
use common::*;
use serde_json::Value;
use tokio::net::TcpListener;

const GIB: u64 = 1 << 30;

/// A 32-core batch-pool node holding two 4-core VMs, stepped once so it has reported.
fn reported_node(scoring: &ScoringParams) -> Node<()> {
    let spec = NodeSpec {
        cpu_millicores: 32_000,
        memory_bytes: 128 * GIB,
        disk_bytes_per_sec: 1_000_000_000,
        batch_pool: true,
    };
    let mut node = Node::new(0, spec, &NoColocation);
    for id in 0..2 {
        let vm = VmSpec {
            request_millicores: 4_000,
            request_mib: 8 * 1024,
            vcpus: 4,
            cpu_millicores: 3_000,
            memory_mib: 6 * 1024,
            work_s: 3_600,
            ..VmSpec::default()
        };
        assert!(node.place(Vm::start(id, vm, 0, 0), &NoColocation));
    }
    let k = Coefficients::default();
    let cx = StepContext::new(&k, scoring, 0.5, 10, Duration::from_millis(100), 8);
    let online = node.online_demand(0, None, &[]);
    let mut ends = Vec::new();
    node.step(
        &NoColocation,
        &cx,
        0,
        &online,
        &mut ends,
        &mut ActionCounts::default(),
    );
    assert!(ends.is_empty());
    node
}

fn proto(r: Resources) -> Option<report::Resources> {
    Some(report::Resources {
        cpu_millicores: r.cpu_millicores,
        memory_bytes: r.memory_bytes,
    })
}

/// colo-scheduler's filter and prioritize answers for a batch pod of `request` on a node that
/// sent the simulator node's report: `None` when filtered out, else its score.
async fn scheduler_verdict(
    node: &Node<()>,
    scoring: ScoringParams,
    request: Resources,
) -> Option<u8> {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = SchedulerConfig {
        scoring,
        ..SchedulerConfig::default()
    };
    let s = colo_scheduler::start(config, grpc, http).unwrap();
    let st = node.report.state;
    s.table
        .ingest(
            NodeReport {
                node_name: "sim-0".into(),
                seq: 1,
                agent_start_unix_ms: 1,
                capacity: proto(st.capacity),
                reclaimable: proto(st.reclaimable),
                offline_usage: proto(st.offline_usage),
                interference: Some(Interference {
                    score: st.interference,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Instant::now(),
        )
        .unwrap();
    let pod = format!(
        r#"{{"metadata":{{"name":"vm","uid":"u"}},"spec":{{"containers":[{{"name":"vm","resources":{{"requests":{{"colo.io/batch-cpu":"{}","colo.io/batch-memory":"{}"}}}}}}]}}}}"#,
        request.cpu_millicores, request.memory_bytes
    );
    let body = format!(r#"{{"Pod":{pod},"NodeNames":["sim-0"]}}"#);
    let mut c = HttpConnection::connect(s.http_addr).await.unwrap();
    let filter: Value = serde_json::from_slice(
        &c.post_json("/colo/filter", body.as_bytes())
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let passed = filter["NodeNames"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n == "sim-0"));
    let prio: Value = serde_json::from_slice(
        &c.post_json("/colo/prioritize", body.as_bytes())
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let score = u8::try_from(prio[0]["Score"].as_i64().unwrap()).unwrap();
    s.shutdown().await.unwrap();
    passed.then_some(score)
}

fn policy(yaml: &str) -> colo_config::Policy {
    colo_config::parse_policy(&[colo_config::Source::new(
        "policy.yaml",
        format!("apiVersion: colo/v1\nkind: Policy\n{yaml}"),
    )])
    .unwrap()
}

#[tokio::test]
async fn scheduler_and_simulator_judge_alike_and_follow_a_policy_change() {
    // The scoring section of the policy YAML, read the way colo-scheduler reads it.
    let default = policy("");
    let tight = policy("scoring:\n  headroom:\n    cpu: 60%\n    memory: 60%\n");
    let (loose_p, tight_p) = (
        ScoringParams::from(&default.scoring),
        ScoringParams::from(&tight.scoring),
    );
    // 16 cores fit in 32 − 10 % − 8 placed, not in 32 − 60 % − 8.
    let request = Resources::new(16_000, 8 * GIB);

    let mut verdicts = Vec::new();
    for p in [loose_p, tight_p] {
        let node = reported_node(&p);
        let sim = cluster::judge(&node.report, request, &p);
        let scheduler = scheduler_verdict(&node, p, request).await;
        assert_eq!(sim, scheduler, "same report, same verdict and score");
        verdicts.push(sim);
    }
    assert!(
        verdicts[0].is_some() && verdicts[1].is_none(),
        "{verdicts:?}"
    );

    // The same change moves the simulator's result, in a baseline and in colo's mode.
    let run_with = |mode, scoring| {
        run(
            &small(9),
            &[mode],
            &SimConfig {
                scoring,
                ..SimConfig::default()
            },
        )
        .remove(0)
        .summary
    };
    for mode in [Mode::NoColocation, Mode::Colo] {
        let (a, b) = (run_with(mode, loose_p), run_with(mode, tight_p));
        assert!(
            b.offline_core_hours < a.offline_core_hours,
            "{mode:?}: {} vs {}",
            a.offline_core_hours,
            b.offline_core_hours
        );
    }
}

#[test]
fn a_change_of_the_engine_policy_changes_the_colo_run() {
    // The QoS engine's own thresholds: a far lower SLI threshold squeezes far more.
    let calm = policy("");
    let strict = policy("interference:\n  sli:\n    high: 0.3\n    low: 0.2\n");
    let run_with = |p: colo_config::Policy| {
        compare::compare(
            synthetic(&small(9)),
            &SimConfig::default(),
            &[Mode::Colo],
            &ModeSettings {
                policy: Some(p),
                ..settings()
            },
            &(),
        )
        .unwrap()
        .remove(0)
        .summary
    };
    let (a, b) = (run_with(calm), run_with(strict));
    assert!(
        b.actions.cpu_quota + b.actions.vcpu_quota + b.actions.pause
            > a.actions.cpu_quota + a.actions.vcpu_quota + a.actions.pause,
        "{:?} vs {:?}",
        a.actions,
        b.actions
    );
    assert!(b.offline_core_hours < a.offline_core_hours);
}
