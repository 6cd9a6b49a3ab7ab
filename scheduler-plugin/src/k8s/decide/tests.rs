//! Unit tests of the extender's decisions.

use std::time::Duration;

use colo_proto::report::{self, NodeReport};

use super::*;

fn report(name: &str, reclaim_cpu: u64, score: f64) -> NodeReport {
    NodeReport {
        node_name: name.into(),
        seq: 1,
        capacity: Some(report::Resources {
            cpu_millicores: 16_000,
            memory_bytes: 64 << 30,
        }),
        reclaimable: Some(report::Resources {
            cpu_millicores: reclaim_cpu,
            memory_bytes: 48 << 30,
        }),
        interference: Some(report::Interference {
            score,
            ..Default::default()
        }),
        ..Default::default()
    }
}

const POD: &str = r#"{"metadata":{"name":"p"},"spec":{"priorityClassName":"batch","containers":[{"resources":{"requests":{"colo.io/batch-cpu":"1000","colo.io/batch-memory":"2Gi"}}}]}}"#;

/// The direct `NodeNames` encoder writes the bytes of the general one (Go's encoding of
/// `ExtenderFilterResult`), for names in order or not, repeated, escaped in the request,
/// needing escapes, unknown and stale.
#[test]
fn names_answers_match_the_general_encoder() {
    let table = NodeTable::new(colo_policy::scoring::AdmissionParams::default());
    let old = Instant::now();
    let now = old + Duration::from_secs(400);
    let mut names = Vec::new();
    for i in 0..300u32 {
        let name = match i % 10 {
            3 => format!("a<b&{i}"),
            4 => format!("née-{i}"),
            5 => format!("gke-cluster-default-pool-{i:08}-x"),
            _ => format!("node-{i:05}"),
        };
        let at = if i % 11 == 0 { old } else { now };
        let cpu = if i % 5 == 0 { 500 } else { 12_000 };
        let score = if i % 7 == 0 { 85.0 } else { f64::from(i % 60) };
        table.ingest(report(&name, cpu, score), at).unwrap();
        names.push(name);
    }
    names.push("ghost".into());
    let config = SchedulerConfig::default();
    let json = |list: &[String]| serde_json::to_string(list).unwrap();
    let mut shuffled = names.clone();
    shuffled.reverse();
    shuffled.swap(3, 200);
    let mut repeated = names.clone();
    repeated.extend(names.iter().step_by(7).cloned());
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    let bodies = [
        json(&names),
        json(&shuffled),
        json(&repeated),
        json(&sorted),
        // The first names written with escapes the request need not use.
        json(&sorted).replacen("node-", "\\u006eode-", 3),
        json(&sorted).replace(',', " , "),
    ];
    for list in &bodies {
        let body = format!(r#"{{"Pod":{POD},"NodeNames":{list}}}"#);
        let args = ExtenderArgs::decode(&body).unwrap();
        let fast = filter(&args, &table, &config, now).unwrap();
        // The same decisions through the general encoder.
        let names = candidate_names(&args).unwrap();
        let mut outcomes = vec![PASS; names.len()];
        let mut reasons = Reasons::new();
        let judge = Judge {
            table: table.view(),
            config: &config,
            now,
            request: batch_request(args.pod.as_ref().unwrap(), &config.batch),
        };
        judge
            .table
            .lookup_each(&*names, now, config.stale_after, |i, found| {
                outcomes[i] = judge.outcome(found, &mut reasons);
            });
        drop(judge);
        let (general, ..) = encode_general_result(&args, &names, &outcomes, &reasons);
        assert_eq!(
            String::from_utf8(fast.clone()).unwrap(),
            String::from_utf8(general).unwrap(),
            "{list}"
        );
        let v: serde_json::Value = serde_json::from_slice(&fast).unwrap();
        assert!(!v["FailedNodes"].as_object().unwrap().is_empty());
        assert!(
            !v["FailedAndUnresolvableNodes"]
                .as_object()
                .unwrap()
                .is_empty()
        );
        assert!(!v["NodeNames"].as_array().unwrap().is_empty());
    }
}
