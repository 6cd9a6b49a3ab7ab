//! YARN's two NodeManager scripts against the real binaries: `coloctl node-attributes` and
//! `coloctl health-check`, directly and through the wrappers in `packaging/yarn/`.
//!
//! * With a running agent: the attribute lines obey YARN's rules (`NODE_ATTRIBUTE:name,STRING,
//!   value`, names and values `[0-9a-zA-Z][0-9a-zA-Z-_]*`); the health line follows the agent's
//!   batch verdict: `OK`, then `ERROR` while a pushed SLI breach makes the node refuse batch
//!   work, then `OK` again once it is calm — exit 0 throughout.
//! * With the agent down (no socket, or a stale one): `colo_interference=unknown`, a `WARN`
//!   health line (the node stays healthy), `ERROR` only with `--unhealthy-when-down`; exit 0.

// The agent's integration-test harness (a real colo-agent in its own cgroup subtree and state
// directory), shared rather than copied; it finds colo-agent through colo-testkit.
#[path = "../../agent/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use colo_testkit::TestCgroup;
use common::{Options, TestAgent, text};

fn coloctl_at(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coloctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("coloctl runs")
}

/// Runs a wrapper script of `packaging/yarn/` as the NodeManager would (no flags of ours but
/// the script's options), pointed at this build's coloctl and at `socket`.
fn script(name: &str, socket: &Path, args: &[&str]) -> Output {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/yarn")
        .join(name);
    Command::new(&path)
        .args(args)
        .env("COLOCTL", env!("CARGO_BIN_EXE_coloctl"))
        .env("COLO_AGENT_SOCKET", socket)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", path.display()))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// YARN's `NodeLabelUtil` pattern for attribute names and values.
fn yarn_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks every line against the script provider's format and returns (name, value) pairs.
fn attributes(o: &Output) -> Vec<(String, String)> {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    let out = stdout(o);
    assert!(out.ends_with('\n'), "{out:?}");
    out.lines()
        .map(|line| {
            let rest = line
                .strip_prefix("NODE_ATTRIBUTE:")
                .unwrap_or_else(|| panic!("not an attribute line: {line:?}"));
            let parts: Vec<&str> = rest.split(',').collect();
            assert_eq!(parts.len(), 3, "name,type,value: {line:?}");
            assert_eq!(parts[1], "STRING", "{line:?}");
            assert!(yarn_name(parts[0]), "name {line:?}");
            assert!(yarn_name(parts[2]), "value {line:?}");
            (parts[0].to_owned(), parts[2].to_owned())
        })
        .collect()
}

fn attribute(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The one health line, checked for what the NodeManager needs: exit 0, one line.
fn health(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    let out = stdout(o);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    out
}

#[test]
fn the_scripts_follow_the_agents_batch_verdict() {
    let test = "the_scripts_follow_the_agents_batch_verdict";
    if !colo_testkit::root_or_skip(test) {
        return;
    }
    let _lock = colo_testkit::host_lock();
    // A service whose SLI is pushed, and a scoring that listens to the SLI alone, so the verdict
    // depends on what this test pushes and not on the host's load.
    let online = TestCgroup::new(&["cpu", "cpuacct"], 64 << 20).expect("online test cgroup");
    let policy = "apiVersion: colo/v1\nkind: Policy\nmode: observe\nscoring:\n  components:\n    run_delay: {weight: 0}\n    psi: {weight: 0}\n    sli: {weight: 1}\n  filter:\n    refuse_above: 50\n    accept_below: 20\n";
    let agent = TestAgent::start(Options {
        extra: format!(
            "services:\n  - name: web\n    selector:\n      cgroups: [/{}]\n    slo:\n      p99: 1ms\n      sli: pushed\n",
            online.name()
        ),
        policy: Some(policy.into()),
        ..Options::default()
    });

    // The first snapshot comes within a second of the QoS loop starting.
    let t0 = Instant::now();
    let attrs = loop {
        let a = attributes(&common::coloctl(&agent, &["node-attributes"]));
        if attribute(&a, "colo_interference").as_deref() != Some("unknown") {
            break a;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no node report within 10 s:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "colo_interference",
            "colo_interference_score",
            "colo_reclaimable_millicores",
            "colo_reclaimable_memory_mb"
        ]
    );
    assert_eq!(attribute(&attrs, "colo_interference").unwrap(), "low");
    assert_eq!(attribute(&attrs, "colo_interference_score").unwrap(), "0");
    let line = health(&common::coloctl(&agent, &["health-check"]));
    assert_eq!(
        line,
        "OK colo: online interference score 0/100, batch work welcome\n"
    );
    // The wrappers print the same.
    assert_eq!(
        health(&script("colo-health-check", &agent.socket, &[])),
        line
    );
    let via_script = attributes(&script("colo-node-attributes", &agent.socket, &[]));
    assert_eq!(attribute(&via_script, "colo_interference").unwrap(), "low");

    // A latency breach (p99 5 ms against 1 ms), pushed as the service would, until the node
    // refuses batch work.
    let breach: Vec<String> = std::iter::repeat_n("5000".to_owned(), 20).collect();
    let mut push = vec!["report-sli", "--service", "web"];
    push.extend(breach.iter().map(String::as_str));
    let t1 = Instant::now();
    let line = loop {
        let o = common::coloctl(&agent, &push);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let line = health(&common::coloctl(&agent, &["health-check"]));
        if line.starts_with("ERROR") {
            break line;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(15),
            "still {line:?} 15 s into the breach:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        line.starts_with(
            "ERROR colo: online interference score 100/100, this node takes no batch work"
        ),
        "{line}"
    );
    assert!(
        health(&script("colo-health-check", &agent.socket, &[])).starts_with("ERROR"),
        "the wrapper too"
    );
    let attrs = attributes(&common::coloctl(&agent, &["node-attributes"]));
    assert_eq!(attribute(&attrs, "colo_interference").unwrap(), "high");
    assert_eq!(attribute(&attrs, "colo_interference_score").unwrap(), "100");

    // Calm: the values age out of the SLI window, the score falls below accept_below.
    let t2 = Instant::now();
    loop {
        let line = health(&common::coloctl(&agent, &["health-check"]));
        if line.starts_with("OK") {
            break;
        }
        assert!(
            t2.elapsed() < Duration::from_secs(20),
            "still {line:?} 20 s after the last push:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let attrs = attributes(&common::coloctl(&agent, &["node-attributes"]));
    assert_eq!(attribute(&attrs, "colo_interference").unwrap(), "low");
}

#[test]
fn with_the_agent_down_the_node_stays_healthy_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("agent.sock");
    // A stale socket: the file of an agent that is gone (nobody listens).
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());

    for socket in [&missing, &stale] {
        let o = coloctl_at(socket, &["node-attributes"]);
        assert_eq!(
            stdout(&o),
            "NODE_ATTRIBUTE:colo_interference,STRING,unknown\n",
            "{}",
            text(&o)
        );
        assert_eq!(o.status.code(), Some(0));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot reach the agent"), "{err}");
        assert!(err.contains("\nhint: "), "{err}");
        assert_eq!(
            attributes(&script("colo-node-attributes", socket, &[])),
            [("colo_interference".to_owned(), "unknown".to_owned())]
        );

        let line = health(&coloctl_at(socket, &["health-check"]));
        assert!(
            line.starts_with(&format!(
                "WARN colo: cannot reach the agent at {}: ",
                socket.display()
            )),
            "{line}"
        );
        assert!(line.ends_with("; not judging this node\n"), "{line}");
        assert!(
            health(&script("colo-health-check", socket, &[])).starts_with("WARN"),
            "the wrapper too"
        );

        let line = health(&coloctl_at(
            socket,
            &["health-check", "--unhealthy-when-down"],
        ));
        assert!(
            line.starts_with("ERROR colo: cannot reach the agent at "),
            "{line}"
        );
        // The NodeManager passes script.opts to the script as arguments.
        let line = health(&script(
            "colo-health-check",
            socket,
            &["--unhealthy-when-down"],
        ));
        assert!(line.starts_with("ERROR"), "{line}");
    }
}
