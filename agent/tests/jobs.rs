//! Jobs end to end: a real colo-agent process, real workload-guest VMs under real cgroups, a
//! real gRPC client over the Unix socket. Each test has its own cgroup subtree and state
//! directory, and checks that the offline subtree is empty at its end.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use colo_agent::jobs::model::{
    Guest, JobRecord, JobSpec, JobState as MState, QosClass, WorkloadGuest,
};
use colo_agent::jobs::procinfo::ProcessIdentity;
use colo_agent::jobs::registry::Registry;
use colo_proto::agent as pb;
use common::{Options, TestAgent, reason, rt, state, submit, wait_end, wait_for, workload};

fn assert_clean(agent: &TestAgent) {
    let left = agent.offline_leftovers();
    assert!(left.is_empty(), "offline subtree not empty: {left:?}");
}

fn cgroup_of(pid: u32, controller: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == controller))
        })
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn twenty_jobs_run_to_completion_with_their_exit_codes() {
    let Some(_lock) = common::vm_guard("twenty_jobs_run_to_completion_with_their_exit_codes")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut ids = Vec::new();
        for i in 0..20i32 {
            let j = submit(
                &mut c,
                workload(&format!("twenty-{i}"), 20 + i as u64, 0, i % 5),
            )
            .await;
            ids.push((j.id, i % 5));
        }
        let mut watchers = Vec::new();
        for (id, code) in ids.clone() {
            let mut c = agent.client().await;
            watchers.push(tokio::spawn(async move {
                (wait_end(&mut c, &id, Duration::from_secs(120)).await, code)
            }));
        }
        for w in watchers {
            let (j, code) = w.await.unwrap();
            assert_eq!(j.exit_code, Some(code), "{j:?}");
            if code == 0 {
                assert_eq!(
                    (state(&j), reason(&j)),
                    (pb::JobState::Succeeded, pb::EndReason::Completed),
                    "{j:?}"
                );
            } else {
                assert_eq!(
                    (state(&j), reason(&j)),
                    (pb::JobState::Failed, pb::EndReason::GuestExitNonzero),
                    "{j:?}"
                );
            }
            assert!(
                j.started_unix_ms >= j.created_unix_ms && j.ended_unix_ms >= j.started_unix_ms,
                "{j:?}"
            );
            assert!(j.cpu_seconds > 0.0, "{j:?}");
        }
        // The serial console of one of them.
        let mut logs = c
            .get_job_logs(pb::GetJobLogsRequest {
                id: ids[0].0.clone(),
                source: 0,
                follow: false,
            })
            .await
            .unwrap()
            .into_inner();
        let mut text = Vec::new();
        while let Some(chunk) = logs.message().await.unwrap() {
            text.extend(chunk.data);
        }
        assert!(
            String::from_utf8_lossy(&text).contains("colo-guest: up"),
            "{}",
            String::from_utf8_lossy(&text)
        );
        let n = c
            .node_status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.jobs_by_state.get("succeeded"), Some(&4));
        assert_eq!(n.jobs_by_state.get("failed"), Some(&16));
        assert_eq!(n.offline_reserved_millicores, 0);
        for (id, _) in &ids {
            let dir = agent.state_dir().join("jobs").join(id);
            let p = dir.join("sandbox");
            assert!(dir.join("job.json").exists() && p.join("serial.log").exists());
            assert!(
                !p.join("control.sock").exists() && !p.join("exit.json").exists(),
                "{}",
                p.display()
            );
        }
    });
    assert_clean(&agent);
}

#[test]
fn a_running_job_lives_in_its_cgroups_and_can_be_cancelled() {
    let Some(_lock) = common::vm_guard("a_running_job_lives_in_its_cgroups_and_can_be_cancelled")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut spec = workload("cancel-me", 0, 600, 0);
        spec.vcpus = 2;
        let j = submit(&mut c, spec).await;
        let j = wait_for(&mut c, &j.id, Duration::from_secs(30), |j| {
            state(j) == pb::JobState::Running
        })
        .await;
        let pid = j.vmm_pid;
        let job_rel = format!("/{}/offline/{}", agent.cgroup.name(), j.id);
        assert_eq!(cgroup_of(pid, "memory"), job_rel);
        assert_eq!(cgroup_of(pid, "pids"), job_rel);
        assert_eq!(
            cgroup_of(pid, "cpu"),
            job_rel,
            "the main thread stays in <job>"
        );
        let mem = agent.cgroup.dir("memory").join(format!("offline/{}", j.id));
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            ((16u64 + 48) << 20).to_string()
        );
        let vcpu_tasks = std::fs::read_to_string(
            agent
                .cgroup
                .dir("cpu")
                .join(format!("offline/{}/vcpu/tasks", j.id)),
        )
        .unwrap();
        let tids: Vec<u32> = vcpu_tasks
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(tids.len(), 2, "both vCPU threads in <job>/vcpu: {tids:?}");
        for t in &tids {
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/comm")).unwrap();
            assert!(name.starts_with("colo-vcpu-"), "{name}");
        }
        assert!(
            std::fs::read_to_string(
                agent
                    .cgroup
                    .dir("cpuacct")
                    .join(format!("offline/{}/vcpu/tasks", j.id))
            )
            .unwrap()
            .contains(&tids[0].to_string())
        );
        // Cancel it.
        let r = c
            .cancel_job(pb::CancelJobRequest {
                id: j.id.clone(),
                reason: "test says so".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.id, j.id);
        let end = wait_end(&mut c, &j.id, Duration::from_secs(30)).await;
        assert_eq!(
            (state(&end), reason(&end)),
            (pb::JobState::Cancelled, pb::EndReason::Cancelled),
            "{end:?}"
        );
        assert!(end.message.contains("test says so"), "{}", end.message);
        assert_eq!(end.exit_code, None);
        // Cancelling again is refused with the state.
        let e = c
            .cancel_job(pb::CancelJobRequest {
                id: j.id.clone(),
                reason: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("cancelled"), "{}", e.message());
    });
    assert_clean(&agent);
}

#[test]
fn every_exit_path_cleans_up() {
    let Some(_lock) = common::vm_guard("every_exit_path_cleans_up") else {
        return;
    };
    let mut agent = TestAgent::start(Options {
        extra_offline: "  drain_on_shutdown: true\n".into(),
        ..Default::default()
    });
    let not_elf = agent.images_dir().join("not-a-kernel");
    std::fs::write(&not_elf, b"not an ELF").unwrap();
    let drained = rt().block_on(async {
        let mut c = agent.client().await;
        // The VMM crashes (killed -9 behind the agent's back).
        let a = submit(&mut c, workload("crash", 0, 600, 0)).await;
        let a = wait_for(&mut c, &a.id, Duration::from_secs(30), |j| {
            state(j) == pb::JobState::Running
        })
        .await;
        // SAFETY: kill(2) on the VMM this test's agent started.
        unsafe { libc::kill(a.vmm_pid as i32, libc::SIGKILL) };
        let a = wait_end(&mut c, &a.id, Duration::from_secs(30)).await;
        assert_eq!(
            (state(&a), reason(&a)),
            (pb::JobState::Failed, pb::EndReason::VmmFailed),
            "{a:?}"
        );
        assert!(a.message.contains("signal 9"), "{}", a.message);
        // The deadline passes.
        let mut spec = workload("deadline", 0, 600, 0);
        spec.deadline_seconds = 1;
        let b = submit(&mut c, spec).await;
        let b = wait_end(&mut c, &b.id, Duration::from_secs(30)).await;
        assert_eq!(
            (state(&b), reason(&b)),
            (pb::JobState::Failed, pb::EndReason::DeadlineExceeded),
            "{b:?}"
        );
        // The VMM refuses to start.
        let spec = pb::JobSpec {
            idempotency_key: "bad-kernel".into(),
            sandbox: Some(pb::job_spec::Sandbox::Linux(pb::LinuxGuest {
                kernel_path: not_elf.display().to_string(),
                ..Default::default()
            })),
            memory_mib: 16,
            ..Default::default()
        };
        let d = submit(&mut c, spec).await;
        let d = wait_end(&mut c, &d.id, Duration::from_secs(30)).await;
        assert_eq!(
            (state(&d), reason(&d)),
            (pb::JobState::Failed, pb::EndReason::VmmFailed),
            "{d:?}"
        );
        // A job running when the agent drains on shutdown.
        let e = submit(&mut c, workload("drained", 0, 600, 0)).await;
        wait_for(&mut c, &e.id, Duration::from_secs(30), |j| {
            state(j) == pb::JobState::Running
        })
        .await;
        e.id
    });
    let st = agent.terminate().unwrap();
    assert!(st.success(), "{st}");
    let (records, problems) = Registry::open(&agent.state_dir()).unwrap().load_all();
    assert!(problems.is_empty());
    let e = records.iter().find(|r| r.id == drained).unwrap();
    assert_eq!(e.state, MState::Preempted, "{e:?}");
    assert_eq!(
        e.end_reason,
        Some(colo_agent::jobs::EndReason::AgentShutdown)
    );
    for r in &records {
        assert!(r.state.is_terminal(), "{r:?}");
        let dir = agent.state_dir().join("jobs").join(&r.id).join("sandbox");
        assert!(!dir.join("control.sock").exists() && !dir.join("exit.json").exists());
    }
    assert_clean(&agent);
}

#[test]
fn kill_9_the_agent_and_it_re_adopts_every_job() {
    let Some(_lock) = common::vm_guard("kill_9_the_agent_and_it_re_adopts_every_job") else {
        return;
    };
    let mut agent = TestAgent::start(Options::default());
    let (five, quick) = rt().block_on(async {
        let mut c = agent.client().await;
        let mut five = Vec::new();
        for i in 0..5 {
            // 15 s: they must outlive the 4.5 s away and the restart, however slow the host.
            let j = submit(&mut c, workload(&format!("survivor-{i}"), 10, 15, i)).await;
            five.push(j.id);
        }
        let quick = submit(&mut c, workload("ends-while-away", 10, 3, 7))
            .await
            .id;
        let mut pids = HashMap::new();
        for id in five.iter().chain([&quick]) {
            let j = wait_for(&mut c, id, Duration::from_secs(30), |j| {
                state(j) == pb::JobState::Running
            })
            .await;
            pids.insert(id.clone(), (j.vmm_pid, j.started_unix_ms));
        }
        (
            five.into_iter()
                .map(|id| {
                    let p = pids[&id];
                    (id, p)
                })
                .collect::<Vec<_>>(),
            quick,
        )
    });
    agent.kill9();
    let away = Instant::now();

    // A registry entry whose pid now belongs to another process: a sleeper this test starts,
    // recorded with a start time that is not the sleeper's.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let real = ProcessIdentity::of(sleeper.id()).unwrap();
    let impostor = ProcessIdentity {
        start_ticks: real.start_ticks.saturating_sub(1000),
        ..real.clone()
    };
    let mut fake = JobRecord::new(
        "j-0-fee".into(),
        JobSpec {
            idempotency_key: "reused-pid".into(),
            name: String::new(),
            guest: Guest::Workload(WorkloadGuest::default()),
            vcpus: 1,
            memory_mib: 16,
            disks: vec![],
            qos_class: QosClass::Batch,
            priority: 0,
            labels: Default::default(),
            deadline_seconds: 0,
        },
        colo_agent::jobs::model::now_ms(),
    );
    fake.state = MState::Running;
    fake.started_unix_ms = fake.created_unix_ms;
    fake.vmm = Some(impostor);
    Registry::open(&agent.state_dir())
        .unwrap()
        .save(&fake)
        .unwrap();

    // Let the quick job end while the agent is away.
    std::thread::sleep(Duration::from_millis(4500).saturating_sub(away.elapsed()));
    agent.spawn();
    agent.wait_serving();
    rt().block_on(async {
        let mut c = agent.client().await;
        // Re-adopted: same VMM, same start, still running.
        for (id, (pid, started)) in &five {
            let j = c
                .get_job(pb::GetJobRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(j.vmm_pid, *pid, "{j:?}");
            assert_eq!(j.started_unix_ms, *started, "{j:?}");
            assert_eq!(state(&j), pb::JobState::Running, "{j:?}");
        }
        // Ended while away: its real exit code, from the exit record.
        let q = wait_end(&mut c, &quick, Duration::from_secs(10)).await;
        assert_eq!(
            (state(&q), reason(&q), q.exit_code),
            (
                pb::JobState::Failed,
                pb::EndReason::GuestExitNonzero,
                Some(7)
            ),
            "{q:?}"
        );
        // The impostor is not adopted, and its process is left alone.
        let f = c
            .get_job(pb::GetJobRequest {
                id: "j-0-fee".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (state(&f), reason(&f)),
            (pb::JobState::Failed, pb::EndReason::NodeLost),
            "{f:?}"
        );
        assert!(
            real.is_alive(),
            "the agent must not touch a process that reused a VMM's pid"
        );
        // The five finish with their own exit codes.
        for (i, (id, _)) in five.iter().enumerate() {
            let j = wait_end(&mut c, id, Duration::from_secs(60)).await;
            assert_eq!(j.exit_code, Some(i as i32), "{j:?}");
            let want = if i == 0 {
                pb::JobState::Succeeded
            } else {
                pb::JobState::Failed
            };
            assert_eq!(state(&j), want, "{j:?}");
        }
        // Nothing lost, nothing run twice: seven jobs, each guest booted once.
        let all = c
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .jobs;
        assert_eq!(all.len(), 7, "{all:?}");
        for (id, _) in &five {
            let serial = std::fs::read_to_string(
                agent
                    .state_dir()
                    .join("jobs")
                    .join(id)
                    .join("sandbox/serial.log"),
            )
            .unwrap();
            assert_eq!(serial.matches("colo-guest: up").count(), 1, "{serial}");
        }
    });
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(agent.log_text().contains("re-adopted running VMM"));
    assert_clean(&agent);
}
