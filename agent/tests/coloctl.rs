//! coloctl against a real agent and real VMs, run as a user would.

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
