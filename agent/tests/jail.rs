//! The VMM jail end to end: a real agent starts real VMMs, and each is checked through the
//! kernel's own view of it (`/proc/<pid>/status`, its root, its threads' seccomp mode).

mod common;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use colo_proto::agent as pb;
use common::{Options, TestAgent, reason, rt, state, submit, wait_end, wait_for, workload};

/// The default `offline.jail` range.
const UID_BASE: u32 = 4_000_000;
const UID_COUNT: u32 = 65_536;

/// A `Key:\tv1\tv2...` line of `/proc/<pid>/status` (or of one thread's).
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

async fn logs(
    c: &mut colo_proto::agent::agent_client::AgentClient<tonic::transport::Channel>,
    id: &str,
) -> String {
    let mut s = c
        .get_job_logs(pb::GetJobLogsRequest {
            id: id.into(),
            source: pb::LogSource::Serial as i32,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = s.message().await.unwrap() {
        text.extend(chunk.data);
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn every_vmm_runs_jailed_as_its_own_uid_with_no_capabilities_and_filtered_threads() {
    let test = "every_vmm_runs_jailed_as_its_own_uid_with_no_capabilities_and_filtered_threads";
    let Some(_lock) = common::vm_guard(test) else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let host_root = std::fs::metadata("/").unwrap();
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let mut spec = workload(&format!("jailed-{i}"), 0, 600, 0);
            spec.vcpus = 2;
            ids.push(submit(&mut c, spec).await.id);
        }
        let mut uids = HashSet::new();
        for id in &ids {
            let j = wait_for(&mut c, id, Duration::from_secs(60), |j| {
                state(j) == pb::JobState::Running
            })
            .await;
            let pid = j.vmm_pid;
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let ids4: Vec<u32> = status_field(&st, "Uid")
                .split_whitespace()
                .map(|u| u.parse().unwrap())
                .collect();
            let uid = ids4[0];
            assert!(
                ids4.iter().all(|u| *u == uid),
                "real, effective, saved, fs: {ids4:?}"
            );
            assert!((UID_BASE..UID_BASE + UID_COUNT).contains(&uid), "uid {uid}");
            assert!(uids.insert(uid), "uid {uid} is another job's too");
            let gids: Vec<u32> = status_field(&st, "Gid")
                .split_whitespace()
                .map(|g| g.parse().unwrap())
                .collect();
            assert_eq!(gids, vec![uid; 4]);
            assert_eq!(status_field(&st, "Groups"), "");
            for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                assert_eq!(status_field(&st, key), "0000000000000000", "{key}");
            }
            assert_eq!(status_field(&st, "NoNewPrivs"), "1");

            // Every thread runs under a seccomp filter (mode 2), the vCPUs and IO thread too.
            let mut names = Vec::new();
            for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
                let t = t.unwrap().path();
                let ts = std::fs::read_to_string(t.join("status")).unwrap();
                let name = status_field(&ts, "Name");
                assert_eq!(status_field(&ts, "Seccomp"), "2", "thread {name}");
                names.push(name);
            }
            assert_eq!(
                names.iter().filter(|n| n.starts_with("colo-vcpu-")).count(),
                2,
                "{names:?}"
            );

            // Its root is not the host's: an empty tmpfs holding only the job's sandbox
            // directory, at its own path.
            let root = std::fs::metadata(format!("/proc/{pid}/root/")).unwrap();
            assert_ne!(
                (root.dev(), root.ino()),
                (host_root.dev(), host_root.ino()),
                "the VMM sees the host's root"
            );
            let top: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root/"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            let first = agent
                .state_dir()
                .components()
                .nth(1)
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            assert_eq!(
                top,
                vec![first],
                "the jail's root holds more than the sandbox path"
            );
            let sandbox = agent.state_dir().join("jobs").join(id).join("sandbox");
            let jailed_view = std::path::PathBuf::from(format!("/proc/{pid}/root"))
                .join(sandbox.strip_prefix("/").unwrap());
            assert!(jailed_view.join("control.sock").exists());
            assert!(
                !std::path::PathBuf::from(format!("/proc/{pid}/root"))
                    .join(
                        agent
                            .state_dir()
                            .join("jobs")
                            .join(id)
                            .join("job.json")
                            .strip_prefix("/")
                            .unwrap()
                    )
                    .exists(),
                "the job's record is out of the VMM's reach"
            );
            // The sandbox directory is the VMM's, the record the agent's.
            assert_eq!(std::fs::metadata(&sandbox).unwrap().uid(), uid);
            let record = agent.state_dir().join("jobs").join(id).join("job.json");
            assert_eq!(std::fs::metadata(&record).unwrap().uid(), 0);
        }

        // The agent still drives them (control socket, signals) and reads their output.
        for id in &ids {
            assert!(logs(&mut c, id).await.contains("colo-guest: up"));
            c.cancel_job(pb::CancelJobRequest {
                id: id.clone(),
                reason: "test".into(),
            })
            .await
            .unwrap();
            let end = wait_end(&mut c, id, Duration::from_secs(30)).await;
            assert_eq!(
                (state(&end), reason(&end)),
                (pb::JobState::Cancelled, pb::EndReason::Cancelled)
            );
        }

        // A VMM owns its sandbox directory, so what it leaves there is read without following
        // links: a serial log swapped for a link to a secret shows nothing of it.
        let secret = agent.state_dir().join("secret.txt");
        std::fs::write(&secret, "TOP-SECRET\n").unwrap();
        let serial = agent
            .state_dir()
            .join("jobs")
            .join(&ids[0])
            .join("sandbox/serial.log");
        std::fs::remove_file(&serial).unwrap();
        std::os::unix::fs::symlink(&secret, &serial).unwrap();
        assert!(!logs(&mut c, &ids[0]).await.contains("TOP-SECRET"));
    });
    let left = agent.offline_leftovers();
    assert!(left.is_empty(), "offline subtree not empty: {left:?}");
}
