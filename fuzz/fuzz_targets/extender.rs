//! The scheduler extender's request decoders and decisions: the first input byte picks the verb
//! (`filter`, `prioritize`, `preempt`), the rest is the HTTP body, handed to
//! `filter_answer` / `prioritize_answer` / `preempt_answer`, what the HTTP handlers run between
//! reading the body and writing the answer, against a table of nodes named as in the wire tests.
#![no_main]

use std::time::Instant;

use colo_proto::report::{Interference, NodeReport, Resources};
use colo_scheduler::k8s::{filter_answer, preempt_answer, prioritize_answer};
use colo_scheduler::{NodeTable, SchedulerConfig};
use libfuzzer_sys::fuzz_target;

/// Nodes in the table: a busy one, an idle one, one refusing batch work, and names that need
/// escaping in JSON.
fn table(config: &SchedulerConfig) -> NodeTable {
    let table = NodeTable::new(config.scoring.admission);
    let now = Instant::now();
    for (i, name) in ["n1", "n2", "node-a", "a<b&c", "née"]
        .into_iter()
        .enumerate()
    {
        let i = i as u64;
        let report = NodeReport {
            node_name: name.into(),
            seq: 1,
            capacity: Some(Resources {
                cpu_millicores: 16_000,
                memory_bytes: 64 << 30,
            }),
            reclaimable: Some(Resources {
                cpu_millicores: 4_000 * i,
                memory_bytes: (8 << 30) * i,
            }),
            interference: Some(Interference {
                score: 20.0 * i as f64,
                ..Default::default()
            }),
            refuses_batch: i == 2,
            ..Default::default()
        };
        table.ingest(report, now).expect("a valid report");
    }
    table
}

fuzz_target!(|data: &[u8]| {
    let Some((verb, body)) = data.split_first() else {
        return;
    };
    let config = SchedulerConfig::default();
    let table = table(&config);
    let answer = match verb % 3 {
        0 => filter_answer(&table, &config, body),
        1 => prioritize_answer(&table, &config, body),
        _ => preempt_answer(&table, &config, body),
    };
    if let Ok(bytes) = answer {
        // kube-scheduler decodes the answer with encoding/json: it must be JSON.
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("the answer is JSON");
    }
});
