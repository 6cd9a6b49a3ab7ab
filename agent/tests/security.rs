//! The job API against a hostile client, with real binaries over real sockets:
//!
//! * paths are capabilities: disks, kernels and images only beneath the operator's roots,
//!   resolved without `..` or symlinks, opened by the agent and handed to the VMM;
//! * TCP means mutual TLS (`security_tls.rs`);
//! * inputs are bounded: SLI reports (unknown services refused, values capped), names counted in
//!   characters with bidi and invisible characters refused, echoed input cut short.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use common::{Options, TestAgent, audit_lines, root_guard, rt};

/// Submits `spec` and returns the refusal's code and message.
fn refusal(agent: &TestAgent, spec: pb::JobSpec) -> (tonic::Code, String) {
    rt().block_on(async {
        let mut c = agent.client().await;
        let e = c
            .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
            .await
            .expect_err("the submit was accepted");
        (e.code(), e.message().to_string())
    })
}

fn with_disk(key: &str, path: &Path, read_only: bool) -> pb::JobSpec {
    let mut s = common::workload(key, 1, 0, 0);
    s.disks.push(pb::Disk {
        path: path.display().to_string(),
        read_only,
        ..Default::default()
    });
    s
}

fn digest(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

#[test]
fn clients_name_files_only_beneath_the_operator_roots() {
    let test = "clients_name_files_only_beneath_the_operator_roots";
    let Some(_lock) = common::vm_guard(test) else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let volumes = agent.volumes_dir();
    // A root-only file outside the roots, as /etc/shadow would be.
    let secret = agent.dir.path().join("secret");
    std::fs::write(&secret, "root:$6$hash:19000::::::\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let before = digest(&secret);
    std::os::unix::fs::symlink(&secret, volumes.join("link")).unwrap();
    nix::unistd::mkfifo(
        &volumes.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let dotdot = PathBuf::from(format!("{}/../secret", volumes.display()));
    for (key, path, needle) in [
        ("dotdot", dotdot.as_path(), "offline.volume_roots"),
        (
            "outside",
            secret.as_path(),
            "is not beneath offline.volume_roots",
        ),
        (
            "etc",
            Path::new("/etc/shadow"),
            "is not beneath offline.volume_roots",
        ),
        (
            "symlink",
            &volumes.join("link"),
            "symlinks are not followed",
        ),
        ("fifo", &volumes.join("fifo"), "is a FIFO"),
        ("missing", &volumes.join("nope.img"), "No such file"),
    ] {
        let (code, msg) = refusal(&agent, with_disk(key, path, false));
        assert_eq!(code, tonic::Code::InvalidArgument, "{key}: {msg}");
        assert!(msg.contains("spec.disks[0].path"), "{key}: {msg}");
        assert!(msg.contains(needle), "{key}: {msg}");
        assert!(
            msg.contains(&volumes.display().to_string()),
            "{key}: the refusal names the allowed root: {msg}"
        );
    }
    // A kernel must lie beneath the image roots.
    let mut linux = common::workload("kernel", 0, 0, 0);
    linux.sandbox = Some(pb::job_spec::Sandbox::Linux(pb::LinuxGuest {
        kernel_path: "/etc/shadow".into(),
        ..Default::default()
    }));
    let (code, msg) = refusal(&agent, linux);
    assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");
    assert!(msg.contains("offline.image_roots"), "{msg}");
    assert!(
        msg.contains(&agent.images_dir().display().to_string()),
        "{msg}"
    );
    assert_eq!(digest(&secret), before, "a refused job touched the file");
    // Nothing was admitted or left behind.
    assert!(agent.offline_leftovers().is_empty());

    // A disk beneath the root works end to end: the VMM writes it through the descriptor the
    // agent opened.
    let disk = volumes.join("scratch.img");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let mut spec = with_disk("inside", &disk, false);
    if let Some(pb::job_spec::Sandbox::Workload(w)) = &mut spec.sandbox {
        w.io = "write:1".into();
    }
    let job = rt().block_on(async {
        let mut c = agent.client().await;
        let j = common::submit(&mut c, spec).await;
        common::wait_end(&mut c, &j.id, Duration::from_secs(60)).await
    });
    assert_eq!(common::state(&job), pb::JobState::Succeeded, "{job:?}");
    assert!(
        digest(&disk).iter().any(|b| *b != 0),
        "the guest's writes reached the disk"
    );
    assert_eq!(digest(&secret), before);
    eprintln!(
        "{test}: 7 escapes refused with the roots named; a disk beneath the root was written through its descriptor"
    );
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn reports_names_and_echoes_are_bounded() {
    let test = "reports_names_and_echoes_are_bounded";
    let Some(_lock) = root_guard(test) else {
        return;
    };
    let online = colo_testkit::TestCgroup::new(&["cpu", "cpuacct"], 64 << 20).unwrap();
    let agent = TestAgent::start(Options {
        extra: format!(
            "services:\n  - name: web\n    selector:\n      cgroups: [/{}]\n",
            online.name()
        ),
        ..Options::default()
    });
    let pid = agent.pid();
    let values = vec![1_000u64; colo_agent::serve::api::MAX_SLI_VALUES_PER_REPORT];
    let start_rss = rss_kib(pid);
    let (unknown, known, after_unknown, after_known) = rt().block_on(async {
        let mut c = agent.client().await;
        // Unknown services: NOT_FOUND, nothing kept.
        let mut unknown = None;
        for i in 0..300 {
            let e = c
                .report_sli(pb::ReportSliRequest {
                    service: format!("nope-{i}"),
                    latency_us: values.clone(),
                })
                .await
                .unwrap_err();
            unknown.get_or_insert((e.code(), e.message().to_string()));
        }
        let after_unknown = rss_kib(pid);
        // Too many values in one call.
        let e = c
            .report_sli(pb::ReportSliRequest {
                service: "web".into(),
                latency_us: vec![1; colo_agent::serve::api::MAX_SLI_VALUES_PER_REPORT + 1],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        // A flood for a known service: kept up to a fixed capacity.
        let mut known = 0;
        for _ in 0..300 {
            known += c
                .report_sli(pb::ReportSliRequest {
                    service: "web".into(),
                    latency_us: values.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .accepted;
        }
        (unknown.unwrap(), known, after_unknown, rss_kib(pid))
    });
    assert_eq!(unknown.0, tonic::Code::NotFound, "{}", unknown.1);
    assert!(
        unknown.1.contains("web"),
        "names the known services: {}",
        unknown.1
    );
    assert_eq!(
        known,
        300 * colo_agent::serve::api::MAX_SLI_VALUES_PER_REPORT as u64
    );
    eprintln!(
        "{test}: agent RSS {start_rss} KiB at start, {after_unknown} KiB after 300 x {} values for unknown services, {after_known} KiB after 300 x {} for a known one",
        values.len(),
        values.len()
    );
    assert!(
        after_known < start_rss + 64 * 1024,
        "RSS grew from {start_rss} to {after_known} KiB"
    );

    // Names: characters, not bytes; bidi overrides refused; a huge id is not echoed whole.
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut s = common::workload("bidi", 1, 0, 0);
        s.name = "report\u{202E}fdp.exe".into();
        let e = c
            .submit_job(pb::SubmitJobRequest { spec: Some(s) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("U+202E"), "{e}");
        let e = c
            .get_job(pb::GetJobRequest {
                id: "x".repeat(100_000),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().len() < 400,
            "echoed {} bytes",
            e.message().len()
        );
    });
    let audit = audit_lines(&agent);
    assert!(
        audit
            .iter()
            .any(|l| l.contains("report_sli") && l.contains("refused")),
        "{audit:#?}"
    );
    assert!(
        audit.iter().all(|l| l.len() < 2_000),
        "an audit line echoed a huge input"
    );
}

#[test]
fn a_vmm_moved_out_of_its_cgroup_is_evicted_with_the_reason() {
    let test = "a_vmm_moved_out_of_its_cgroup_is_evicted_with_the_reason";
    let Some(_lock) = common::vm_guard(test) else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let job = rt().block_on(async {
        let mut c = agent.client().await;
        let j = common::submit(&mut c, common::workload("moved", 0, 600, 0)).await;
        common::wait_for(&mut c, &j.id, Duration::from_secs(30), |j| {
            common::state(j) == pb::JobState::Running
        })
        .await
    });
    // Behind the agent's back: the VMM leaves its job cgroup for the test's own root (a cgroup
    // this test created), where no job limit applies.
    let hierarchy = common::CONTROLLERS[0];
    let root_procs = agent.cgroup.dir(hierarchy).join("cgroup.procs");
    std::fs::write(&root_procs, job.vmm_pid.to_string()).unwrap();
    let t0 = Instant::now();
    let ended = rt().block_on(async {
        let mut c = agent.client().await;
        common::wait_end(&mut c, &job.id, Duration::from_secs(30)).await
    });
    assert_eq!(
        (common::state(&ended), common::reason(&ended)),
        (pb::JobState::Preempted, pb::EndReason::Evicted),
        "{ended:?}"
    );
    assert!(
        ended.message.contains("is no longer in its cgroup"),
        "{}",
        ended.message
    );
    eprintln!(
        "{test}: ended {:.1} s after the move: {}",
        t0.elapsed().as_secs_f64(),
        ended.message
    );
}
