//! Same seed, same bytes: table, CSV and plots; whatever the number of threads; and the same
//! run from the synthetic generator or from the binary file it writes.

mod common;

use std::path::Path;

use colo_sim::cluster::SimConfig;
use colo_sim::compare::{self, Mode};
use colo_sim::report;
use colo_sim::trace::binary::{self, BinaryTrace};
use colo_sim::trace::synthetic::{OnlineNoise, SyntheticParams, SyntheticTrace};
use colo_sim::trace::{TraceSource, VmSpec};
use common::*;

fn outputs(seed: u64, threads: usize, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let p = small(seed);
    let cfg = SimConfig {
        threads,
        buckets: 72,
        ..SimConfig::default()
    };
    let results = run(&p, &BASELINES, &cfg);
    let table = report::table(&results, "test", cfg.slo_p99_ms);
    let files = compare::write_outputs(dir, &results, cfg.slo_p99_ms, true).unwrap();
    let mut out = vec![("table".to_owned(), table.into_bytes())];
    for f in files {
        out.push((
            f.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&f).unwrap(),
        ));
    }
    out
}

#[test]
fn same_seed_gives_identical_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = outputs(7, 1, a.path());
    let again = outputs(7, 1, b.path());
    assert_eq!(first.len(), 9, "table, 2 CSV, 3 plots × SVG and PNG");
    for ((name, x), (_, y)) in first.iter().zip(&again) {
        assert!(x == y, "{name} differs between two runs with the same seed");
    }
    let other = run(&small(8), &BASELINES, &SimConfig::default());
    assert_ne!(
        first[1].1,
        report::summary_csv(&other).into_bytes(),
        "another seed gives another summary"
    );
}

#[test]
fn thread_count_does_not_change_a_run() {
    let p = small(11);
    let modes = [Mode::StaticReservation, Mode::Colo];
    let one = run(
        &p,
        &modes,
        &SimConfig {
            threads: 1,
            ..SimConfig::default()
        },
    );
    let three = run(
        &p,
        &modes,
        &SimConfig {
            threads: 3,
            ..SimConfig::default()
        },
    );
    assert_eq!(one, three);
    assert_eq!(report::series_csv(&one), report::series_csv(&three));
}

#[test]
fn many_shards_give_the_same_bytes_for_any_thread_count() {
    // 150 nodes: three shards of up to 64 nodes, handed out to whichever thread is free.
    let p = SyntheticParams {
        nodes: 150,
        days: 0.05,
        ..small(5)
    };
    let modes = [Mode::Colo];
    let with = |threads| {
        run(
            &p,
            &modes,
            &SimConfig {
                threads,
                ..SimConfig::default()
            },
        )
    };
    let (one, two, three) = (with(1), with(2), with(3));
    assert_eq!(one, two);
    assert_eq!(one, three);
    assert_eq!(report::series_csv(&one), report::series_csv(&three));
    // The heap on huge pages (as the binary runs): the same results.
    let huge = run(
        &p,
        &modes,
        &SimConfig {
            threads: 2,
            huge_pages: true,
            ..SimConfig::default()
        },
    );
    assert_eq!(one, huge);
}

#[test]
fn binary_trace_replays_the_synthetic_run_exactly() {
    let p = small(5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.bin");
    let mut t = SyntheticTrace::new(&p).unwrap();
    let info = t.info().clone();
    let mut vms: Vec<VmSpec> = Vec::new();
    for s in 0..info.steps {
        t.arrivals(s, &mut vms).unwrap();
    }
    let mut noise = vec![OnlineNoise::default(); info.nodes.len()];
    let model = t.online_model();
    binary::write(
        &path,
        &info,
        |step, row| {
            for (i, (s, n)) in row.iter_mut().zip(noise.iter_mut()).enumerate() {
                *s = model.sample(u32::try_from(i).unwrap(), step, n);
            }
            Ok(())
        },
        &mut vms,
    )
    .unwrap();
    let cfg = SimConfig::default();
    let from_generator = run(&p, &BASELINES, &cfg);
    let from_file = compare::compare(
        || Ok(Box::new(BinaryTrace::open(&path)?) as Box<dyn TraceSource>),
        &cfg,
        &BASELINES,
        &settings(),
        &(),
    )
    .unwrap();
    assert_eq!(from_generator, from_file);
}
