//! coloctl against a real agent and real VMs, run as a user would.

// The agent's integration-test harness (a real colo-agent in its own cgroup subtree and state
// directory), shared rather than copied; it finds colo-agent through colo-testkit.
#[path = "../../agent/tests/common/mod.rs"]
mod common;

use common::{Options, TestAgent, coloctl, text};

#[test]
fn coloctl_submits_follows_lists_and_cancels() {
    let test = "coloctl_submits_follows_lists_and_cancels";
    let Some(_lock) = common::vm_guard(test) else {
        return;
    };
    let agent = TestAgent::start(Options::default());

    let o = coloctl(
        &agent,
        &["submit", "--key", "ok-1", "--cpu-units", "5", "--wait"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("succeeded (completed) exit=0"),
        "{}",
        text(&o)
    );

    let o = coloctl(
        &agent,
        &[
            "submit",
            "--key",
            "bad-1",
            "--exit-code",
            "3",
            "--wait",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed job exits 1: {}",
        text(&o)
    );
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["state"]["state"], "failed");
    assert_eq!(last["state"]["end_reason"], "guest_exit_nonzero");
    assert_eq!(last["state"]["exit_code"], 3);

    let o = coloctl(&agent, &["list", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let jobs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let ok_id = jobs
        .iter()
        .find(|j| j["spec"]["idempotency_key"] == "ok-1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = coloctl(&agent, &["list", "--state", "failed"]);
    let t = text(&o);
    assert!(t.starts_with("ID "), "{t}");
    assert_eq!(t.lines().count(), 2, "header and the failed job: {t}");
    assert!(t.contains("guest_exit_nonzero"), "{t}");

    let o = coloctl(&agent, &["get", &ok_id]);
    assert!(text(&o).contains("state:       succeeded"), "{}", text(&o));
    let o = coloctl(&agent, &["logs", &ok_id]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("colo-guest: up"),
        "{}",
        text(&o)
    );
    let o = coloctl(&agent, &["logs", "--vmm", &ok_id]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("colo-vmm: started"),
        "{}",
        text(&o)
    );
    let o = coloctl(&agent, &["watch", &ok_id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A job file, then cancel it.
    let file = agent.dir.path().join("job.yaml");
    std::fs::write(
        &file,
        "key: long-1\nname: long one\nworkload: {hold_seconds: 600}\nlabels: {team: test}\n",
    )
    .unwrap();
    let o = coloctl(
        &agent,
        &["submit", "-f", file.to_str().unwrap(), "-o", "json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let long_id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["spec"]["labels"]["team"], "test");
    let o = coloctl(&agent, &["submit", "-f", file.to_str().unwrap()]);
    assert!(
        text(&o).starts_with("existing "),
        "same key, same job: {}",
        text(&o)
    );
    let o = coloctl(&agent, &["node"]);
    assert!(text(&o).contains("budget:"), "{}", text(&o));
    let o = coloctl(&agent, &["cancel", &long_id, "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cancelled (cancelled)"), "{}", text(&o));

    let o = coloctl(&agent, &["get", "j-0-000"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("not found"), "{}", text(&o));
    let o = coloctl(&agent, &["policy", "reload"]);
    assert!(text(&o).contains("policy reloaded"), "{}", text(&o));
    assert!(agent.offline_leftovers().is_empty());
}

#[test]
fn coloctl_exits_quietly_when_its_reader_has_gone() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let test = "coloctl_exits_quietly_when_its_reader_has_gone";
    if !colo_testkit::root_or_skip(test) {
        return;
    }
    let _lock = colo_testkit::host_lock();
    let agent = TestAgent::start(Options::default());
    for args in [
        &["node"][..],
        &["node", "-o", "json"],
        &["list"],
        &["get", "nope"],
    ] {
        // `coloctl node | head -3` with the reader gone before coloctl writes: a real pipe
        // whose read end is closed, so the first write fails with EPIPE.
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let mut child = Command::new(env!("CARGO_BIN_EXE_coloctl"))
            .arg("--socket")
            .arg(&agent.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "coloctl {args:?} hangs");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!stderr.contains("panicked"), "coloctl {args:?}: {stderr}");
        if args[0] == "get" {
            // An error still goes to stderr, with its status.
            assert_eq!(status.code(), Some(3), "{stderr}");
            assert!(stderr.contains("not found"), "{stderr}");
        } else {
            assert!(
                status.success() || status.signal() == Some(libc::SIGPIPE),
                "coloctl {args:?}: {status:?} {stderr}"
            );
            assert_eq!(stderr, "", "coloctl {args:?} says nothing");
        }
    }
}

#[test]
fn without_an_agent_coloctl_says_the_cause_once_and_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("agent.sock");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let run = |socket: &std::path::Path, via_env: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coloctl"));
        if via_env {
            cmd.env("COLO_AGENT_SOCKET", socket);
        } else {
            cmd.arg("--socket").arg(socket);
        }
        let o = cmd.arg("node").output().unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        String::from_utf8(o.stderr).unwrap()
    };
    for via_env in [false, true] {
        let err = run(&missing, via_env);
        let lines: Vec<&str> = err.lines().collect();
        let cause = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
        let cause = cause.split(" (os error").next().unwrap();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].starts_with(&format!(
                "coloctl: cannot reach the agent at {}: {cause}",
                missing.display()
            )),
            "{err}"
        );
        assert_eq!(err.matches(cause).count(), 1, "the cause said once: {err}");
        assert!(!err.contains("transport error"), "{err}");
        assert!(
            lines[1].starts_with("hint: is colo-agent running (`systemctl status colo-agent`)?"),
            "{err}"
        );
        assert!(lines[1].contains("--socket"), "{err}");
        assert!(lines[1].contains("COLO_AGENT_SOCKET"), "{err}");
    }
    let err = run(&stale, false);
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "hint: {} exists but no colo-agent listens on it",
            stale.display()
        )),
        "{err}"
    );
}

#[test]
fn node_shows_an_uncapped_memory_budget_as_null_and_in_words() {
    let test = "node_shows_an_uncapped_memory_budget_as_null_and_in_words";
    if !colo_testkit::root_or_skip(test) {
        return;
    }
    let _lock = colo_testkit::host_lock();
    let agent = TestAgent::start(Options {
        budget_cpu: 1.0,
        budget_memory: "null",
        ..Options::default()
    });
    let o = coloctl(&agent, &["node", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["offline_budget_millicores"], 1000);
    assert!(v["offline_budget_memory_bytes"].is_null(), "{v}");
    let o = coloctl(&agent, &["node"]);
    let t = text(&o);
    let budget = t.lines().find(|l| l.starts_with("budget:")).unwrap();
    assert_eq!(
        budget, "budget:       0m / 0MiB reserved of 1000m / no memory cap by 0 jobs",
        "{t}"
    );
}
