//! The agent's API, listeners and service-manager protocol, against a real colo-agent process
//! over its Unix socket (no VM needed: validation and admission happen before any VMM starts).

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use common::{Options, TestAgent, root_guard, rt, workload};

#[test]
fn malformed_requests_name_the_field_and_the_rule() {
    let Some(_lock) = root_guard("malformed_requests_name_the_field_and_the_rule") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    rt().block_on(async {
        let mut c = agent.client().await;
        let invalid = |s: tonic::Status, field: &str, rule: &str| {
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
            assert!(
                s.message().starts_with(&format!("{field}: ")),
                "{field}: {}",
                s.message()
            );
            assert!(s.message().contains(rule), "{rule}: {}", s.message());
        };
        let e = c
            .submit_job(pb::SubmitJobRequest { spec: None })
            .await
            .unwrap_err();
        invalid(e, "spec", "required");
        let mut s = workload("", 1, 0, 0);
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(s.clone()),
            })
            .await
            .unwrap_err();
        invalid(e, "spec.idempotency_key", "required");
        s.idempotency_key = "has space".into();
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(s.clone()),
            })
            .await
            .unwrap_err();
        invalid(e, "spec.idempotency_key", "[A-Za-z0-9._:-]");
        s.idempotency_key = "ok".into();
        s.vcpus = 1000;
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(s.clone()),
            })
            .await
            .unwrap_err();
        invalid(e, "spec.vcpus", "max_vcpus");
        s.vcpus = 1;
        s.sandbox = Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
            exit_code: 200,
            ..Default::default()
        }));
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(s.clone()),
            })
            .await
            .unwrap_err();
        invalid(e, "spec.workload.exit_code", "0..=63");
        s.sandbox = None;
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(s.clone()),
            })
            .await
            .unwrap_err();
        invalid(e, "spec.sandbox", "workload");
        let e = c
            .get_job(pb::GetJobRequest {
                id: "../../etc".into(),
            })
            .await
            .unwrap_err();
        invalid(e, "id", "job id");
        let e = c
            .get_job(pb::GetJobRequest {
                id: "j-0-000".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = c
            .list_jobs(pb::ListJobsRequest {
                states: vec![42],
                ..Default::default()
            })
            .await
            .unwrap_err();
        invalid(e, "states[0]", "JobState");
        let e = c
            .cancel_job(pb::CancelJobRequest {
                id: String::new(),
                reason: String::new(),
            })
            .await
            .unwrap_err();
        invalid(e, "id", "required");
        let e = c
            .get_job_logs(pb::GetJobLogsRequest {
                id: "j-1".into(),
                source: 7,
                follow: false,
            })
            .await
            .unwrap_err();
        invalid(e, "source", "LOG_SOURCE_SERIAL");
        let e = c
            .report_sli(pb::ReportSliRequest {
                service: String::new(),
                latency_us: vec![1],
            })
            .await
            .unwrap_err();
        invalid(e, "service", "required");
        // Nothing was admitted.
        let n = c
            .node_status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.offline_reserved_jobs, 0);
        assert_eq!(n.node_name, "test-node");
        assert_eq!(n.cgroup_version, "v1");
    });
    assert!(agent.offline_leftovers().is_empty());
}

#[test]
fn a_job_larger_than_the_budget_is_rejected_with_the_reason() {
    let Some(_lock) = root_guard("a_job_larger_than_the_budget_is_rejected_with_the_reason") else {
        return;
    };
    let agent = TestAgent::start(Options {
        budget_cpu: 1.0,
        budget_memory: "32MiB",
        extra_offline: "  max_vcpus: 2\n".into(),
        ..Default::default()
    });
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut s = workload("big-cpu", 1, 0, 0);
        s.vcpus = 2;
        let e = c
            .submit_job(pb::SubmitJobRequest { spec: Some(s) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("offline budget"), "{}", e.message());
        assert!(
            e.message().contains("needs 2000 millicores"),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("budget is 1000 millicores"),
            "{}",
            e.message()
        );
        let mut s = workload("big-mem", 1, 0, 0);
        s.memory_mib = 64;
        let e = c
            .submit_job(pb::SubmitJobRequest { spec: Some(s) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("64 MiB"), "{}", e.message());
        assert!(e.message().contains("32 MiB"), "{}", e.message());
        let n = c
            .node_status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.offline_budget_millicores, 1000);
        assert_eq!(n.offline_reserved_millicores, 0);
        assert!(
            n.jobs_by_state.values().all(|v| *v == 0),
            "{:?}",
            n.jobs_by_state
        );
    });
}

#[test]
fn idempotency_keys_return_the_same_job() {
    let Some(_lock) = root_guard("idempotency_keys_return_the_same_job") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    rt().block_on(async {
        let mut c = agent.client().await;
        let a = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(workload("same-key", 1, 0, 0)),
            })
            .await
            .unwrap()
            .into_inner();
        let b = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(workload("same-key", 1, 0, 0)),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!a.existing && b.existing);
        assert_eq!(a.job.unwrap().id, b.job.unwrap().id);
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(workload("same-key", 2, 0, 0)),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists);
        assert!(e.message().contains("same-key"), "{}", e.message());
        let jobs = c
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .jobs;
        assert_eq!(jobs.len(), 1);
        let _ = common::wait_end(&mut c, &jobs[0].id, Duration::from_secs(60)).await;
    });
    assert!(
        agent.offline_leftovers().is_empty(),
        "{:?}",
        agent.offline_leftovers()
    );
}

#[test]
fn policy_reload_refuses_an_invalid_policy_and_keeps_the_old_one() {
    let Some(_lock) = root_guard("policy_reload_refuses_an_invalid_policy_and_keeps_the_old_one")
    else {
        return;
    };
    // Starts in enforce mode (no jobs run here), so that the reload to observe changes it.
    let mut agent = TestAgent::start(Options {
        policy: Some("apiVersion: colo/v1\nkind: Policy\n".into()),
        ..Options::default()
    });
    let policy = agent.dir.path().join("policy.yaml");
    rt().block_on(async {
        let mut c = agent.client().await;
        let hash0 = c
            .node_status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .policy_hash;
        std::fs::write(
            &policy,
            "apiVersion: colo/v1\nkind: Policy\nmode: observe\n",
        )
        .unwrap();
        let r = c
            .reload_policy(pb::ReloadPolicyRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(r.applied, "{r:?}");
        assert_ne!(r.policy_hash, hash0);
        let n = c
            .node_status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (n.policy_mode.as_str(), &n.policy_hash),
            ("observe", &r.policy_hash)
        );
        std::fs::write(&policy, "apiVersion: colo/v1\nkind: Policy\nmode: loud\n").unwrap();
        let bad = c
            .reload_policy(pb::ReloadPolicyRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!bad.applied);
        assert!(bad.error.contains("policy.yaml:3"), "{}", bad.error);
        assert_eq!(bad.policy_hash, r.policy_hash);
        // SIGHUP: an invalid file is refused the same way, a valid one applied.
        // SAFETY: kill(2) on the agent this test started.
        unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = c
            .node_status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.policy_hash, r.policy_hash);
        std::fs::write(&policy, "apiVersion: colo/v1\nkind: Policy\n").unwrap();
        // SAFETY: as above.
        unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = c
                .node_status(pb::NodeStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            if n.policy_mode == "enforce" {
                break;
            }
            assert!(Instant::now() < deadline, "SIGHUP did not reload");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(
        agent.log_text().contains("policy reload refused"),
        "{}",
        agent.log_text()
    );
    let st = agent.terminate().unwrap();
    assert!(st.success(), "{st}");
    assert!(!agent.socket.exists(), "the socket is removed on shutdown");
}

#[test]
fn notify_protocol_ready_after_serving_then_watchdog_at_half_the_interval() {
    let Some(_lock) =
        root_guard("notify_protocol_ready_after_serving_then_watchdog_at_half_the_interval")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut agent = TestAgent::start(Options {
        env: vec![
            ("NOTIFY_SOCKET".into(), notify.display().to_string()),
            ("WATCHDOG_USEC".into(), "400000".into()),
        ],
        ..Default::default()
    });
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    let mut ready_at = None;
    let mut pings = Vec::new();
    while pings.len() < 8 {
        let n = sock.recv(&mut buf).expect("a notification within 20 s");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        let now = Instant::now();
        if msg.contains("READY=1") {
            // READY is only sent once the API socket is served.
            assert!(std::os::unix::net::UnixStream::connect(&agent.socket).is_ok());
            assert!(msg.contains("STATUS=serving"), "{msg}");
            ready_at = Some(now);
        }
        if msg.contains("WATCHDOG=1") {
            assert!(ready_at.is_some(), "WATCHDOG before READY");
            pings.push(now);
        }
        got.push(msg);
    }
    let gaps: Vec<f64> = pings
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    // Half of 400 ms; generous bounds (a shared 2-core machine).
    assert!(
        (0.12..=0.35).contains(&median),
        "median ping gap {median} s: {gaps:?}"
    );
    let st = agent.terminate().unwrap();
    assert!(st.success());
    let mut stopping = false;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1: {got:?}");
}

/// Waits (at most 20 s) for the agent process to exit on its own.
fn wait_exit(agent: &mut TestAgent) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = agent.child.as_mut().unwrap().try_wait().unwrap() {
            agent.child = None;
            return st;
        }
        assert!(Instant::now() < deadline, "the agent did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_start_that_fails_after_binding_the_socket_removes_it() {
    let Some(_lock) = root_guard("a_start_that_fails_after_binding_the_socket_removes_it") else {
        return;
    };
    let mut agent = TestAgent::start(Options::default());
    let good = std::fs::read_to_string(&agent.config).unwrap();

    // A second agent on the same state directory fails before binding: the first one's socket
    // stays.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_colo-agent"))
        .arg("--config")
        .arg(&agent.config)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another colo-agent holds"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        agent.socket.exists(),
        "the serving agent's socket was removed"
    );
    agent.terminate();
    assert!(!agent.socket.exists());

    // TLS material that cannot be read: api.tcp fails after the Unix socket was bound.
    let bad_tcp = good.replace(
        "api:\n",
        "api:\n  tcp:\n    listen: 127.0.0.1:0\n    cert: /nonexistent/agent.crt\n    key: /nonexistent/agent.key\n",
    );
    // A taken port: metrics.listen fails after both.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad_metrics = good.replace(
        "metrics:\n  listen: null\n",
        &format!("metrics:\n  listen: {}\n", taken.local_addr().unwrap()),
    );
    assert_ne!(bad_metrics, good);
    for (yaml, cause) in [(bad_tcp, "api.tcp"), (bad_metrics, "metrics.listen")] {
        std::fs::write(&agent.config, yaml).unwrap();
        agent.spawn();
        let st = wait_exit(&mut agent);
        assert!(!st.success(), "{st:?}");
        let log = agent.log_text();
        assert!(log.contains(cause), "{log}");
        assert!(
            !agent.socket.exists(),
            "{cause}: the socket was left behind"
        );
    }
}
