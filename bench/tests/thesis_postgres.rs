//! The thesis benchmark's online side against the real PostgreSQL and pgbench: a cluster of its
//! own in a cgroup of its own, `pgbench -i -s 1`, one 2-second phase at 50 tps, and its
//! per-transaction log read back. Skips loudly without root or PostgreSQL 15; stops the server
//! and removes the cgroup whatever happens.

use std::time::Duration;

use colo_bench::host::BenchCgroup;
use colo_bench::services::Postgres;
use colo_bench::thesis::{Phase, PhaseKind, log_files, parse_log, start_phase};

#[test]
fn a_phase_of_pgbench_against_the_benchs_own_cluster_logs_every_transaction() {
    let test = "a_phase_of_pgbench_against_the_benchs_own_cluster_logs_every_transaction";
    if !colo_testkit::root_or_skip(test) {
        return;
    }
    if let Err(e) = Postgres::available() {
        eprintln!("\n*** SKIPPED {test}: {e} ***\n");
        return;
    }
    let _lock = colo_testkit::host_lock();
    let dir = tempfile::tempdir().unwrap();
    // The server runs as `postgres`, which must pass through the (0700) temporary directory.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cg = BenchCgroup::create(
        &format!("colo-bench-test-pg-{}", std::process::id()),
        &["cpu", "cpuacct", "memory"],
        Some(1 << 30),
    )
    .unwrap();
    let result = std::panic::catch_unwind(|| {
        let pg = Postgres::start(&dir.path().join("pg"), &cg).unwrap();
        pg.init_pgbench(1, &cg).unwrap();
        let phase = Phase {
            kind: PhaseKind::Peak,
            rate: 50.0,
            secs: 2,
        };
        let prefix = dir.path().join("phase0");
        let st = start_phase(&pg, &cg, phase, 2, &prefix)
            .unwrap()
            .wait()
            .unwrap();
        assert!(st.success(), "pgbench: {st}");
        let text: String = log_files(&prefix)
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let (done, not_done) = parse_log(&text);
        // 50 tps for 2 s: about 100 transactions (Poisson arrivals), none skipped or failed.
        assert!(
            (50..=200).contains(&done.len()),
            "{} transactions",
            done.len()
        );
        assert_eq!(not_done, 0);
        assert!(
            done.iter()
                .all(|t| t.latency_us > 0 && t.latency_us < 10_000_000)
        );
        let cluster = pg.dir.clone();
        drop(pg);
        assert!(!cluster.exists(), "the cluster's directory is removed");
    });
    std::thread::sleep(Duration::from_millis(100));
    cg.remove();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
