//! `colo-agent --check` against the shipped examples, run from the repository root as an
//! operator would: the good `agent.yaml` (alone and with the example policies) passes with exit
//! 0; every bad policy of `config/examples/bad/` and every bad `agent.yaml` of
//! `config/examples/bad-agent/` is refused with exit 78 and exactly its golden
//! `FILE:LINE:COL: message` lines (`config/tests/golden/`). Nothing is started: no root needed.

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `colo-agent --check --config CONFIG`, in the repository root.
fn check(config: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_colo-agent"))
        .arg("--check")
        .arg("--config")
        .arg(config)
        .current_dir(repo())
        .env_remove("COLO_AGENT_CONFIG")
        .output()
        .expect("colo-agent runs")
}

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

/// The error lines (without the summary line), checked to be located.
fn refused(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{what}: {err}");
    let (errors, summary) = err
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("{what}: errors and a summary line: {err}"));
    assert!(
        summary.starts_with("colo-agent --check: ")
            && summary.ends_with("colo-agent would not start (exit 78)"),
        "{what}: {summary}"
    );
    format!("{errors}\n")
}

#[test]
fn the_example_agent_yaml_passes() {
    let o = check(Path::new("config/examples/agent.yaml"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stderr.is_empty());
    assert!(out.starts_with("config/examples/agent.yaml: ok\n"), "{out}");
    // It names /etc/colo/policy.yaml and /etc/colo/policy.d, which a build host lacks; with
    // the example policies in their place the check reads and reports them.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("config/examples/agent.yaml")).unwrap();
    let here = repo().canonicalize().unwrap();
    let text = text
        .replace(
            "/etc/colo/policy.yaml",
            &here
                .join("config/examples/policy.yaml")
                .display()
                .to_string(),
        )
        .replace(
            "/etc/colo/policy.d",
            &here.join("config/examples/policy.d").display().to_string(),
        );
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, text).unwrap();
    let o = check(&config);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let policy = out.lines().find(|l| l.starts_with("policy: ")).unwrap();
    assert!(policy.starts_with("policy: ok, mode "), "{out}");
    for f in [
        "policy.yaml",
        "policy.d/10-base.yaml",
        "policy.d/20-latency-critical.yaml",
    ] {
        assert!(policy.contains(f), "{f} not read: {out}");
    }
}

#[test]
fn every_bad_policy_example_is_refused_with_its_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let files = yaml_files("config/examples/bad");
    assert!(files.len() >= 30, "{files:?}");
    for f in files {
        // An otherwise good agent.yaml naming the bad policy by its repository path, so the
        // errors name it as the golden files do.
        let config = dir.path().join("agent.yaml");
        std::fs::write(
            &config,
            format!("policy:\n  paths: [config/examples/bad/{f}]\n"),
        )
        .unwrap();
        let o = check(&config);
        let errors = refused(&o, &f);
        let stem = f.trim_end_matches(".yaml");
        let golden =
            std::fs::read_to_string(repo().join(format!("config/tests/golden/bad/{stem}.txt")))
                .unwrap();
        assert_eq!(errors, golden, "{f}");
    }
}

#[test]
fn every_bad_agent_example_is_refused_with_its_located_errors() {
    let files = yaml_files("config/examples/bad-agent");
    assert!(files.len() >= 10, "{files:?}");
    for f in files {
        let o = check(&Path::new("config/examples/bad-agent").join(&f));
        let errors = refused(&o, &f);
        let stem = f.trim_end_matches(".yaml");
        let golden = std::fs::read_to_string(
            repo().join(format!("config/tests/golden/bad-agent/{stem}.txt")),
        )
        .unwrap();
        assert_eq!(errors, golden, "{f}");
    }
}

#[test]
fn the_agent_itself_exits_78_on_a_bad_policy() {
    // Not only the check: a start with a bad policy exits 78 too (before any cgroup or socket),
    // which the unit's RestartPreventExitStatus=78 does not restart.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "offline:\n  state_dir: {}\npolicy:\n  paths: [config/examples/bad/03-bad-mode.yaml]\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_colo-agent"))
        .arg("--config")
        .arg(&config)
        .current_dir(repo())
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains("config/examples/bad/03-bad-mode.yaml:4:7: mode: unknown value `enforse`"),
        "{err}"
    );
}

#[test]
fn one_grammar_for_durations_and_sizes_in_the_check_and_in_coloctl() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Compound and decimal forms pass, in agent.yaml and in the policy.
    let policy = write(
        "policy.yaml",
        "apiVersion: colo/v1\nkind: Policy\ntiming:\n  release_after: 1m30s\n  release_cooldown: 1.5s\nio:\n  vm:\n    bandwidth: 2.5MiB/s\n",
    );
    let config = write(
        "agent.yaml",
        &format!(
            "scheduler:\n  endpoint: http://colo-scheduler.example:9470\n  report_interval: 1m30s\noffline:\n  memory: 1.5GiB\npolicy:\n  paths: [{}]\n",
            policy.display()
        ),
    );
    let o = check(&config);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A Kubernetes-style unit is refused at its place, with the spelling colo takes.
    let policy = write(
        "policy.yaml",
        "apiVersion: colo/v1\nkind: Policy\nio:\n  vm:\n    bandwidth: 100Mi/s\n",
    );
    let errors = refused(&check(&config), "100Mi/s");
    assert!(
        errors.starts_with(&format!(
            "{}:5:16: io.vm.bandwidth: invalid rate `100Mi/s`: ",
            policy.display()
        )),
        "{errors}"
    );
    assert!(errors.ends_with("; did you mean `100MiB/s`?\n"), "{errors}");

    // coloctl parses job durations and rates with the same grammar, before it connects.
    let coloctl = |args: &[&str]| {
        std::process::Command::new(colo_testkit::workspace_binary("coloctl"))
            .arg("--socket")
            .arg(dir.path().join("no-agent.sock"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = coloctl(&["submit", "--cpu-units", "1", "--deadline", "5 sec"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.starts_with("coloctl: --deadline: invalid duration `5 sec`: "),
        "{err}"
    );
    assert!(err.contains("did you mean `5s`?"), "{err}");
    // A good one gets as far as the (missing) agent.
    for (flag, value) in [("--deadline", "1h30m"), ("--disk", "/d.img,bw=64MiB/s")] {
        let o = coloctl(&["submit", "--cpu-units", "1", flag, value]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot reach the agent"), "{value}: {err}");
    }
    let o = coloctl(&["submit", "--cpu-units", "1", "--disk", "/d.img,bw=64Mi/s"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("did you mean `64MiB/s`?"), "{err}");
}
