//! Report ingest on the scheduler: up to 16 length-delimited protobuf `NodeReport`s, each
//! admitted by `colo_scheduler::ingest::admit` (the name check, the report check, the table)
//! as one `StreamReports` stream would, into a table of at most 4 nodes; then the table is
//! listed as `ListNodes` does.
#![no_main]

use std::time::Instant;

use colo_proto::report::NodeReport;
use colo_scheduler::ingest::{admit, node_view};
use colo_scheduler::{NodeTable, SchedulerConfig};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let config = SchedulerConfig::default();
    let table = NodeTable::with_max_nodes(config.scoring.admission, 4);
    let mut rest = data;
    for _ in 0..16 {
        if rest.is_empty() {
            break;
        }
        let Ok(report) = NodeReport::decode_length_delimited(&mut rest) else {
            break;
        };
        drop(admit(&table, &config, None, report));
    }
    let (page, _) = table.page(None, 8, Instant::now());
    for (report, snap) in &page {
        drop(node_view(report, *snap, &config));
    }
});
