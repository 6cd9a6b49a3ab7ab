//! Container jobs end to end: a real colo-agent, a real OCI runtime (runc or crun), real cgroups
//! and a busybox root filesystem. Needs root, busybox-static and an OCI runtime; says loudly
//! when it skips (and fails under `COLO_REQUIRE_KVM=1`, as CI installs them).

#[path = "../common/mod.rs"]
mod common;
mod image_config;

use std::path::{Path, PathBuf};
use std::time::Duration;

use colo_proto::agent as pb;
use common::*;

/// Root, a static busybox and an OCI runtime, or a loud skip; holds the host lock.
fn container_guard(test: &str) -> Option<(colo_testkit::HostLock, PathBuf)> {
    let lock = root_guard(test)?;
    let busybox = colo_testkit::busybox_or_skip(test)?;
    if !common::oci_runtime_or_skip(test) {
        return None;
    }
    Some((lock, busybox))
}

/// A busybox image beneath the agent's image root, with `extra` directories (volume targets).
fn image(agent: &TestAgent, busybox: &Path, extra: &[&str]) -> PathBuf {
    let dir = agent.images_dir().join("busybox");
    colo_testkit::busybox_rootfs(busybox, &dir, extra).expect("busybox rootfs");
    dir
}

/// A container job spec.
fn container(key: &str, image: &Path, command: &str, args: &[&str]) -> pb::JobSpec {
    pb::JobSpec {
        idempotency_key: key.into(),
        sandbox: Some(pb::job_spec::Sandbox::Container(pb::ContainerJob {
            image: image.display().to_string(),
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })),
        vcpus: 1,
        memory_mib: 64,
        ..Default::default()
    }
}

fn state(j: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(j.state).unwrap_or(pb::JobState::Unspecified)
}

fn reason(j: &pb::Job) -> pb::EndReason {
    pb::EndReason::try_from(j.end_reason).unwrap_or(pb::EndReason::Unspecified)
}

/// What a container job may leave behind once it ended: cgroups named after it in any
/// hierarchy of the node, and its runtime state.
fn leftovers(agent: &TestAgent, id: &str) -> Vec<PathBuf> {
    let mut out = agent.offline_leftovers();
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let d = entry
            .path()
            .join(agent.cgroup.name())
            .join("offline")
            .join(id);
        if d.exists() {
            out.push(d);
        }
    }
    let state = agent.dir.path().join("runc").join(format!("colo-{id}"));
    if state.exists() {
        out.push(state);
    }
    let bundle = agent.state_dir().join("jobs").join(id).join("bundle");
    if bundle.exists() {
        out.push(bundle);
    }
    // The staged volume and image mounts (and their mount points).
    let mounts = agent.state_dir().join("mounts").join(id);
    if mounts.exists() {
        out.push(mounts);
    }
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = format!("/mounts/{id}/");
    out.extend(
        table
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.contains(&mounted))
            .map(PathBuf::from),
    );
    out
}

/// An agent for container tests (its runtime's state lives in the test's directory).
fn start_agent() -> TestAgent {
    TestAgent::start(Options::default())
}

#[test]
fn a_container_job_ends_with_its_exit_code_and_coloctl_shows_its_output() {
    let Some((_lock, busybox)) =
        container_guard("a_container_job_ends_with_its_exit_code_and_coloctl_shows_its_output")
    else {
        return;
    };
    let agent = start_agent();
    let img = image(&agent, &busybox, &[]);
    let out = coloctl(
        &agent,
        &[
            "submit",
            "--sandbox",
            "container",
            "--image",
            &img.display().to_string(),
            "--",
            "sh",
            "-c",
            "echo hi; exit 7",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("j-"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no job id in {}", text(&out)));
    let rt = rt();
    let j = rt.block_on(async {
        let mut c = agent.client().await;
        wait_end(&mut c, &id, Duration::from_secs(60)).await
    });
    assert_eq!(
        (state(&j), reason(&j), j.exit_code),
        (
            pb::JobState::Failed,
            pb::EndReason::GuestExitNonzero,
            Some(7)
        ),
        "{j:?}"
    );
    let logs = coloctl(&agent, &["logs", &id]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("hi"),
        "{}",
        text(&logs)
    );
    assert_eq!(leftovers(&agent, &id), Vec::<PathBuf>::new());
}

#[test]
fn a_real_batch_program_sorts_a_file_from_a_read_only_volume_into_a_writable_one() {
    let test = "a_real_batch_program_sorts_a_file_from_a_read_only_volume_into_a_writable_one";
    let Some((_lock, busybox)) = container_guard(test) else {
        return;
    };
    let agent = start_agent();
    let img = image(&agent, &busybox, &["/in", "/out"]);
    let input = agent.volumes_dir().join("in");
    let output = agent.volumes_dir().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    // 200 MB of pseudo-random lines (COLO_TEST_SORT_MB scales it down on a slow, small host
    // such as the TCG test host, whose whole file system lives in its 1 GiB of RAM).
    let megabytes: u64 = std::env::var("COLO_TEST_SORT_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    eprintln!("{test}: sorting {megabytes} MB");
    let data = input.join("data.txt");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&data).unwrap());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut written = 0u64;
        while written < megabytes * 1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let line = format!("{x:016x}{:08x}\n", x.rotate_left(21) as u32);
            f.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
    }
    let mut spec = container(
        "sort-200mb",
        &img,
        "sort",
        &["-o", "/out/sorted.txt", "/in/data.txt"],
    );
    spec.memory_mib = 1536;
    if let Some(pb::job_spec::Sandbox::Container(c)) = &mut spec.sandbox {
        c.volumes = vec![
            pb::VolumeMount {
                source: input.display().to_string(),
                target: "/in".into(),
                read_only: true,
            },
            pb::VolumeMount {
                source: output.display().to_string(),
                target: "/out".into(),
                read_only: false,
            },
        ];
        c.env.insert("LC_ALL".into(), "C".into());
    }
    let rt = rt();
    let j = rt.block_on(async {
        let mut c = agent.client().await;
        let j = submit(&mut c, spec).await;
        wait_end(&mut c, &j.id, Duration::from_secs(600)).await
    });
    assert_eq!(state(&j), pb::JobState::Succeeded, "{j:?}");
    let expected = std::process::Command::new("sort")
        .env("LC_ALL", "C")
        .arg(&data)
        .output()
        .unwrap();
    assert!(expected.status.success());
    let got = std::fs::read(output.join("sorted.txt")).unwrap();
    assert_eq!(got.len(), expected.stdout.len());
    assert!(
        got == expected.stdout,
        "the container's sort differs from the host's"
    );
    // The read-only volume stayed read-only.
    let j2 = rt.block_on(async {
        let mut c = agent.client().await;
        let mut s = container("ro-check", &img, "touch", &["/in/x"]);
        if let Some(pb::job_spec::Sandbox::Container(c)) = &mut s.sandbox {
            c.volumes = vec![pb::VolumeMount {
                source: input.display().to_string(),
                target: "/in".into(),
                read_only: true,
            }];
        }
        let j = submit(&mut c, s).await;
        wait_end(&mut c, &j.id, Duration::from_secs(60)).await
    });
    assert_eq!(state(&j2), pb::JobState::Failed, "{j2:?}");
    assert!(!input.join("x").exists());
    // The volumes were mounted from staged mounts of the agent's, unmounted at the end with
    // the volumes' files untouched.
    for id in [&j.id, &j2.id] {
        assert_eq!(leftovers(&agent, id), Vec::<PathBuf>::new());
    }
    assert!(data.exists() && output.join("sorted.txt").exists());
}

#[test]
fn after_kill_9_of_the_agent_every_container_is_re_adopted_and_ends_with_its_own_code() {
    let Some((_lock, busybox)) = container_guard(
        "after_kill_9_of_the_agent_every_container_is_re_adopted_and_ends_with_its_own_code",
    ) else {
        return;
    };
    let mut agent = start_agent();
    let img = image(&agent, &busybox, &[]);
    let rt = rt();
    let ids: Vec<String> = rt.block_on(async {
        let mut c = agent.client().await;
        let mut ids = Vec::new();
        for (key, script) in [
            ("early", "sleep 2; exit 11"),
            ("late", "sleep 12; exit 12"),
            ("ok", "sleep 12; exit 0"),
        ] {
            let j = submit(&mut c, container(key, &img, "sh", &["-c", script])).await;
            ids.push(j.id);
        }
        for id in &ids {
            wait_for(&mut c, id, Duration::from_secs(60), |j| {
                state(j) == pb::JobState::Running
            })
            .await;
        }
        ids
    });
    agent.kill9();
    // The first container ends while no agent runs.
    std::thread::sleep(Duration::from_secs(4));
    agent.spawn();
    agent.wait_serving();
    let ends: Vec<pb::Job> = rt.block_on(async {
        let mut c = agent.client().await;
        let mut ends = Vec::new();
        for id in &ids {
            ends.push(wait_end(&mut c, id, Duration::from_secs(90)).await);
        }
        ends
    });
    let got: Vec<(pb::JobState, Option<i32>)> =
        ends.iter().map(|j| (state(j), j.exit_code)).collect();
    assert_eq!(
        got,
        vec![
            (pb::JobState::Failed, Some(11)),
            (pb::JobState::Failed, Some(12)),
            (pb::JobState::Succeeded, Some(0)),
        ],
        "{ends:?}"
    );
    for id in &ids {
        assert_eq!(leftovers(&agent, id), Vec::<PathBuf>::new());
    }
}

#[test]
fn a_container_over_its_memory_limit_ends_oom_killed() {
    let Some((_lock, busybox)) =
        container_guard("a_container_over_its_memory_limit_ends_oom_killed")
    else {
        return;
    };
    let agent = start_agent();
    let img = image(&agent, &busybox, &[]);
    let rt = rt();
    let j = rt.block_on(async {
        let mut c = agent.client().await;
        // The job's limit is its 16 MiB plus the harness's 48 MiB overhead; the shell holds
        // 300 MB in a variable.
        let mut spec = container(
            "oom",
            &img,
            "sh",
            &["-c", "x=$(yes | head -c 300000000); echo ${#x}"],
        );
        spec.memory_mib = 16;
        let j = submit(&mut c, spec).await;
        wait_end(&mut c, &j.id, Duration::from_secs(120)).await
    });
    assert_eq!(
        (state(&j), reason(&j)),
        (pb::JobState::Failed, pb::EndReason::OomKilled),
        "{j:?}"
    );
    assert_eq!(leftovers(&agent, &j.id), Vec::<PathBuf>::new());
}

fn oom_score_adj(pid: u32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The monitor is shielded from the OOM killer (where this process may lower a score:
/// `CAP_SYS_RESOURCE`), and the container's init does not inherit the shield: it has the
/// score the agent has (here: this test's).
fn oom_scores_are_the_monitor_s_and_the_container_s(monitor: u32) {
    let children = std::fs::read_dir(format!("/proc/{monitor}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .collect::<String>();
    let init: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the monitor {monitor} has no child"));
    let ours = oom_score_adj(std::process::id());
    assert_eq!(oom_score_adj(init), ours, "the container's init {init}");
    let caps = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_RESOURCE: u32 = 24;
    if eff & (1 << CAP_SYS_RESOURCE) != 0 {
        assert_eq!(oom_score_adj(monitor), -1000, "the monitor {monitor}");
    } else {
        eprintln!(
            "no CAP_SYS_RESOURCE here: the monitor cannot shield itself (score {})",
            oom_score_adj(monitor)
        );
    }
}

#[test]
fn cancel_and_deadline_stop_a_container() {
    let Some((_lock, busybox)) = container_guard("cancel_and_deadline_stop_a_container") else {
        return;
    };
    let agent = start_agent();
    let img = image(&agent, &busybox, &[]);
    let rt = rt();
    rt.block_on(async {
        let mut c = agent.client().await;
        // Ignores SIGTERM: the stop grace ends in SIGKILL.
        let a = submit(
            &mut c,
            container("cancel", &img, "sh", &["-c", "trap '' TERM; sleep 600"]),
        )
        .await;
        let running = wait_for(&mut c, &a.id, Duration::from_secs(60), |j| {
            state(j) == pb::JobState::Running
        })
        .await;
        oom_scores_are_the_monitor_s_and_the_container_s(running.vmm_pid);
        // The image directory, used in place, reaches the runtime as a mount of the agent's.
        let staged = agent.state_dir().join("mounts").join(&a.id).join("rootfs");
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().nth(4) == Some(&*staged.to_string_lossy())),
            "{} is not a mount point",
            staged.display()
        );
        c.cancel_job(pb::CancelJobRequest {
            id: a.id.clone(),
            reason: "test".into(),
        })
        .await
        .expect("cancel");
        let a = wait_end(&mut c, &a.id, Duration::from_secs(60)).await;
        assert_eq!(
            (state(&a), reason(&a)),
            (pb::JobState::Cancelled, pb::EndReason::Cancelled),
            "{a:?}"
        );
        let mut spec = container("deadline", &img, "sleep", &["600"]);
        spec.deadline_seconds = 1;
        let b = submit(&mut c, spec).await;
        let b = wait_end(&mut c, &b.id, Duration::from_secs(60)).await;
        assert_eq!(
            (state(&b), reason(&b)),
            (pb::JobState::Failed, pb::EndReason::DeadlineExceeded),
            "{b:?}"
        );
        for id in [&a.id, &b.id] {
            assert_eq!(leftovers(&agent, id), Vec::<PathBuf>::new());
        }
    });
}

#[test]
fn bad_container_requests_are_refused_naming_the_cause_and_leave_nothing() {
    let Some((_lock, busybox)) =
        container_guard("bad_container_requests_are_refused_naming_the_cause_and_leave_nothing")
    else {
        return;
    };
    let agent = start_agent();
    let img = image(&agent, &busybox, &[]);
    let outside = agent.dir.path().join("elsewhere");
    colo_testkit::busybox_rootfs(&busybox, &outside, &[]).unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut c = agent.client().await;
        let cases = [
            (
                container("outside", &outside, "true", &[]),
                tonic::Code::InvalidArgument,
                "spec.container.image",
            ),
            (
                container("absent", &agent.images_dir().join("nope"), "true", &[]),
                tonic::Code::InvalidArgument,
                "spec.container.image",
            ),
            (
                container("no-command", &img, "", &[]),
                tonic::Code::InvalidArgument,
                "spec.container.command",
            ),
        ];
        for (spec, code, field) in cases {
            let e = c
                .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
                .await
                .unwrap_err();
            assert_eq!(e.code(), code, "{e:?}");
            assert!(e.message().contains(field), "{e:?}");
        }
        let jobs = c
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(jobs.jobs.is_empty(), "{jobs:?}");
    });
    assert!(agent.offline_leftovers().is_empty());
    drop(agent);
    // A node without an OCI runtime refuses container jobs up front.
    let o = Options {
        container: "    runtime: /nonexistent/runc\n".into(),
        ..Options::default()
    };
    let agent = TestAgent::start(o);
    let img = image(&agent, &busybox, &[]);
    rt.block_on(async {
        let mut c = agent.client().await;
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(container("no-runtime", &img, "true", &[])),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains("/nonexistent/runc") && e.message().contains("install runc"),
            "{e:?}"
        );
    });
    assert!(agent.offline_leftovers().is_empty());
}
