//! A full state directory, for real: a 1 MiB tmpfs mounted as a real agent's state directory
//! (unmounted when the test ends, also when it fails) and filled up. A submit is refused naming
//! the cause and leaves nothing; a job whose record cannot be kept ends Failed at once naming the
//! cause, with no orphan file, no stale record and no cgroup left.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use common::{Options, TestAgent, reason, state, submit, wait_end, workload};

/// Fills the filesystem of `path` with a file of whole pages; returns it and its size.
fn fill(path: &Path) -> (File, u64) {
    let mut f = File::create(path).unwrap();
    let page = [0xa5u8; 4096];
    let mut size = 0u64;
    loop {
        match f.write(&page) {
            Ok(4096) => size += 4096,
            Ok(n) => {
                // A partial page: keep the size a whole number of pages.
                f.set_len(size).unwrap();
                assert!(n < 4096);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    (f, size)
}

/// The names under `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_full_state_directory_refuses_submits_and_fails_jobs_naming_the_cause() {
    let test = "a_full_state_directory_refuses_submits_and_fails_jobs_naming_the_cause";
    if !colo_testkit::root_or_skip(test) {
        return;
    }
    let _lock = colo_testkit::host_lock();
    let mut agent = TestAgent::start(Options {
        state_tmpfs: Some("1m"),
        ..Default::default()
    });
    let state_dir = agent.state_dir();
    let jobs = state_dir.join("jobs");
    let full = format!(
        "the state directory {} is full (No space left on device)",
        state_dir.display()
    );
    let (filler, size) = fill(&state_dir.join("filler"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = agent.client().await;

        // No room at all: refused, naming the cause, and nothing left behind.
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(workload("full-1", 1, 0, 0)),
            })
            .await
            .unwrap_err();
        assert!(e.message().contains(&full), "{e:?}");
        assert_eq!(
            entries(&jobs),
            Vec::<String>::new(),
            "a refused submit's leftovers"
        );

        // Room for the first record only: admitted, then Failed at once (not after the start
        // timeout), naming the cause...
        filler.set_len(size - 4096).unwrap();
        let t0 = Instant::now();
        let job = submit(&mut c, workload("full-2", 1, 0, 0)).await;
        let end = wait_end(&mut c, &job.id, Duration::from_secs(30)).await;
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert_eq!(state(&end), pb::JobState::Failed, "{end:?}");
        assert_eq!(reason(&end), pb::EndReason::VmmFailed, "{end:?}");
        assert!(end.message.contains(&full), "{}", end.message);
        // ...with no orphan: its record could not be saved, so its directory is gone (no
        // job.json.tmp, no record still saying it is live), and so are its cgroups.
        assert_eq!(
            entries(&jobs),
            Vec::<String>::new(),
            "the failed job's leftovers"
        );
        assert!(agent.offline_leftovers().is_empty());
    });

    // With space again, a restarted agent finds nothing to start or adopt.
    drop(filler);
    std::fs::remove_file(state_dir.join("filler")).unwrap();
    agent.terminate();
    agent.spawn();
    agent.wait_serving();
    rt.block_on(async {
        let mut c = agent.client().await;
        let list = c
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(list.jobs.is_empty(), "{list:?}");
    });
    assert_eq!(entries(&jobs), Vec::<String>::new());
    assert!(
        !agent.log_text().contains("panicked"),
        "{}",
        agent.log_text()
    );
}
