//! The Alibaba cluster-trace-v2018 sample under `simulations/data/` parses with every table's
//! reader, converts, and runs; malformed rows are refused with file and line.

mod common;

use std::path::{Path, PathBuf};

use colo_sim::alibaba::tables::{
    BatchInstance, BatchTask, ContainerMeta, ContainerUsage, MachineMeta, MachineUsage, Table,
};
use colo_sim::alibaba::{self, AlibabaError, ConvertOptions, read_table};
use colo_sim::cluster::SimConfig;
use colo_sim::compare::{self, Mode};
use colo_sim::trace::TraceSource;
use colo_sim::trace::binary::BinaryTrace;
use common::settings;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/alibaba-sample")
}

#[test]
fn every_table_of_the_sample_parses() {
    let dir = sample();
    let mut rows = Vec::new();
    for table in Table::ALL {
        let n = read_table(&dir, table, |f, _| match table {
            Table::MachineMeta => MachineMeta::parse(f).map(|_| ()),
            Table::MachineUsage => MachineUsage::parse(f).map(|_| ()),
            Table::ContainerMeta => ContainerMeta::parse(f).map(|_| ()),
            Table::ContainerUsage => ContainerUsage::parse(f).map(|_| ()),
            Table::BatchTask => BatchTask::parse(f).map(|_| ()),
            Table::BatchInstance => BatchInstance::parse(f).map(|_| ()),
        })
        .unwrap();
        assert!(n > 0, "{} is empty", table.file());
        rows.push((table.file(), n));
    }
    // The sample keeps the published quirks: empty fields and the -1 invalid marker.
    let usage = std::fs::read_to_string(dir.join("machine_usage.csv")).unwrap();
    assert!(usage.contains(",,,,"), "empty fields");
    assert!(usage.lines().any(|l| l.ends_with(",-1")), "invalid marker");
    let mut seen = None;
    read_table(&dir, Table::BatchInstance, |f, _| {
        let b = BatchInstance::parse(f)?;
        if b.task_name.starts_with('M') && b.task_name.contains('_') {
            seen = Some(b.task_name.to_owned());
        }
        Ok(())
    })
    .unwrap();
    assert!(seen.is_some(), "DAG task names like M2_1: {rows:?}");
}

#[test]
fn the_sample_converts_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sample.bin");
    let stats = alibaba::convert(&sample(), &out, &ConvertOptions::default()).unwrap();
    assert_eq!(stats.nodes, 4);
    assert_eq!(stats.batch_pool, 1, "m_4 hosts no online container");
    assert!(
        stats.instances > 0 && stats.instances_skipped > 0,
        "{stats}"
    );
    assert!(stats.online_cpu_mean_pct > 1.0, "{stats}");
    let r = compare::compare(
        || Ok(Box::new(BinaryTrace::open(&out)?) as Box<dyn TraceSource>),
        &SimConfig::default(),
        &[Mode::NoColocation, Mode::StaticReservation],
        &settings(),
        &(),
    )
    .unwrap();
    for r in &r {
        let v = &r.summary.vms;
        assert!(v.conserved(), "{v:?}");
        assert_eq!(v.submitted, stats.vms as u64 + v.preempted);
        assert!(v.finished > 0, "{v:?}");
    }
}

/// Copies the sample into a temporary directory, appending `extra` to `table`.
fn broken(table: Table, extra: &str) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    for t in Table::ALL {
        std::fs::copy(sample().join(t.file()), dir.path().join(t.file())).unwrap();
    }
    let p = dir.path().join(table.file());
    let mut text = std::fs::read_to_string(&p).unwrap();
    let line = text.lines().count() as u64 + 1;
    text.push_str(extra);
    text.push('\n');
    std::fs::write(&p, text).unwrap();
    (dir, line)
}

fn convert_error(dir: &Path) -> String {
    let out = dir.join("x.bin");
    match alibaba::convert(dir, &out, &ConvertOptions::default()) {
        Err(e @ AlibabaError::Row { .. }) => e.to_string(),
        other => panic!("expected a row error, got {other:?}"),
    }
}

#[test]
fn malformed_rows_name_file_and_line() {
    let (dir, line) = broken(Table::ContainerUsage, "c_1,m_1,86400,29,86,,,,,");
    let e = convert_error(dir.path());
    let want = format!(
        "{}:{line}: 10 columns, this table has 11",
        dir.path().join("container_usage.csv").display()
    );
    assert!(e.starts_with(&want), "{e}");

    let (dir, line) = broken(
        Table::BatchInstance,
        "ins_9,M1,j_1,1,Terminated,86406,soon,m_2,1,1,87,113,0.22,0.26",
    );
    let e = convert_error(dir.path());
    let want = format!(
        "{}:{line}: column 7 (end_time) is `soon`, not a number",
        dir.path().join("batch_instance.csv").display()
    );
    assert_eq!(e, want);

    let (dir, line) = broken(Table::MachineMeta, ",0,11,B,96,100,USING");
    let e = convert_error(dir.path());
    assert!(
        e.ends_with(&format!(
            "machine_meta.csv:{line}: column 1 (machine_id) is empty"
        )),
        "{e}"
    );
}

#[test]
fn a_missing_table_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = alibaba::convert(
        dir.path(),
        &dir.path().join("x.bin"),
        &ConvertOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("machine_meta.csv"), "{e}");
}
