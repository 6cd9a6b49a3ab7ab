//! `coloctl policy` end to end, run from the repository root as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("coloctl/ has a parent")
        .to_path_buf()
}

fn coloctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coloctl"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("coloctl runs")
}

#[test]
fn the_example_policies_are_valid() {
    let out = coloctl(&[
        "policy",
        "check",
        "config/examples/policy.yaml",
        "config/examples/policy.d",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config/examples/policy.yaml: valid\nconfig/examples/policy.d: valid\n"
    );
}

#[test]
fn every_bad_example_exits_1_with_its_golden_message() {
    let bad = repo_root().join("config/examples/bad");
    let mut files: Vec<_> = std::fs::read_dir(&bad)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let rel = format!("config/examples/bad/{name}");
        let out = coloctl(&["policy", "check", &rel]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{rel}: {stdout}");
        let stem = name.trim_end_matches(".yaml");
        let golden = repo_root().join(format!("config/tests/golden/bad/{stem}.txt"));
        assert_eq!(stdout, std::fs::read_to_string(golden).unwrap(), "{rel}");
        assert!(stdout.starts_with(&format!("{rel}:")), "{stdout}");
    }
}

#[test]
fn json_output_carries_the_structured_error() {
    let out = coloctl(&[
        "policy",
        "check",
        "--output",
        "json",
        "config/examples/bad/12-stop-above-evict.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["results"][0]["errors"][0];
    assert_eq!(v["valid"], false);
    assert_eq!(e["file"], "config/examples/bad/12-stop-above-evict.yaml");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(6), Some(12))
    );
    assert_eq!(e["path"], "memory.stop_at");
    assert_eq!(e["kind"], "conflict");
    assert_eq!(e["value"], "95%");
}

#[test]
fn show_prints_the_effective_policy_which_checks_clean() {
    let out = coloctl(&["policy", "show", "config/examples/policy.d"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("mode: enforce") && text.contains("evict_at: 92%"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let shown = dir.path().join("shown.yaml");
    std::fs::write(&shown, &text).unwrap();
    let again = coloctl(&["policy", "check", shown.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn show_refuses_an_invalid_policy_on_stderr() {
    let out = coloctl(&["policy", "show", "config/examples/bad/03-bad-mode.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("03-bad-mode.yaml:4:7: mode:"));
}

#[test]
fn the_schema_command_prints_the_committed_schemas() {
    let out = coloctl(&["policy", "schema"]);
    let committed = std::fs::read(repo_root().join("config/schema/policy.schema.json")).unwrap();
    assert_eq!(out.stdout, committed);
    let out = coloctl(&["policy", "schema", "--agent"]);
    let committed = std::fs::read(repo_root().join("config/schema/agent.schema.json")).unwrap();
    assert_eq!(out.stdout, committed);
}

#[test]
fn a_fifo_is_refused_at_once_naming_the_path() {
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("policy.yaml");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    for cmd in ["check", "show"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coloctl"))
            .args(["policy", cmd])
            .arg(&fifo)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("coloctl policy {cmd} blocked on a FIFO for 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains(&format!(
                "{}:1:1: is not a regular file (it is a FIFO); a configuration or policy file \
                 must be a regular file",
                fifo.display()
            )),
            "{text}"
        );
    }
}
