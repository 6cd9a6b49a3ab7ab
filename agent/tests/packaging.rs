//! `packaging/colo-agent.service` and `packaging/colo.slice` pass `systemd-analyze verify`
//! (Debian package `systemd`), with no warning, and keep the settings the agent depends on; the
//! unit's configuration check is the real `colo-agent --check` and a bad configuration is not
//! restarted; the YARN wrapper scripts are executable shell that run coloctl.

use std::path::Path;
use std::process::Command;

/// Whether `systemd-analyze` is installed; without it the test says loudly that it skipped
/// (and fails where CI requires every host feature, `COLO_REQUIRE_KVM=1`).
fn systemd_analyze_or_skip(test: &str) -> bool {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var("COLO_REQUIRE_KVM").as_deref() != Ok("1"),
        "systemd-analyze is missing: apt-get install systemd (scripts/install-deps.sh)"
    );
    eprintln!("\n*** SKIPPED {test}: no systemd-analyze ***\n");
    false
}

/// `systemd-analyze verify` accepts `unit` with no error and no warning.
fn verify_cleanly(unit: &Path) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/colo-agent.service");
    let text = std::fs::read_to_string(&unit).expect("packaging/colo-agent.service");
    for line in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "WatchdogSec=",
        "CapabilityBoundingSet=CAP_SYS_RESOURCE",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStartPre=/usr/local/bin/colo-agent --check --config /etc/colo/agent.yaml",
        "RestartPreventExitStatus=78",
        "StartLimitBurst=",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line} missing from the unit"
        );
    }
    // What each VMM's jail needs of the unit: a mount namespace, pivot_root, dropping its
    // bounding set and changing to the job's uid and gid.
    let caps = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    for cap in [
        "CAP_SYS_ADMIN",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_CHOWN",
    ] {
        assert!(
            caps.split_whitespace().any(|c| c == cap),
            "{cap} missing: {caps}"
        );
    }
    let ns = text
        .lines()
        .find_map(|l| l.strip_prefix("RestrictNamespaces="))
        .unwrap();
    assert!(ns.split_whitespace().any(|n| n == "mnt"), "{ns}");
    if !systemd_analyze_or_skip("the_systemd_unit_verifies_cleanly") {
        return;
    }
    // Verify a copy whose ExecStart names the binary this build produced (verify checks that
    // the executable exists).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("colo-agent.service");
    std::fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/colo-agent",
            env!("CARGO_BIN_EXE_colo-agent"),
        ),
    )
    .unwrap();
    verify_cleanly(&copy);
}

#[test]
fn the_slice_gives_colo_a_low_cpu_weight_and_verifies_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let slice = std::fs::read_to_string(root.join("colo.slice")).expect("packaging/colo.slice");
    assert!(
        slice.lines().any(|l| l == "CPUWeight=1"),
        "colo.slice must carry the low CPU weight"
    );
    let unit = std::fs::read_to_string(root.join("colo-agent.service")).unwrap();
    assert!(
        unit.lines().any(|l| l == "Slice=colo.slice"),
        "the agent must run in colo.slice"
    );
    if !systemd_analyze_or_skip("the_slice_gives_colo_a_low_cpu_weight_and_verifies_cleanly") {
        return;
    }
    verify_cleanly(&root.join("colo.slice"));
}

/// The value of `key=` in the unit (its single occurrence).
fn setting<'a>(unit: &'a str, key: &str) -> &'a str {
    let mut values = unit
        .lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')));
    let v = values
        .next()
        .unwrap_or_else(|| panic!("no {key}= in the unit"));
    assert!(values.next().is_none(), "{key}= twice");
    v
}

#[test]
fn the_units_check_is_colo_agent_check_and_78_is_not_restarted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("packaging/colo-agent.service")).unwrap();
    let pre: Vec<&str> = setting(&unit, "ExecStartPre").split_whitespace().collect();
    let start: Vec<&str> = setting(&unit, "ExecStart").split_whitespace().collect();
    assert_eq!(pre[0], start[0], "the check runs the same binary");
    // ExecStart's --config and the check's are the same file.
    assert_eq!(&pre[pre.len() - 2..], &start[start.len() - 2..]);
    assert_eq!(pre[1], "--check");
    let prevent = setting(&unit, "RestartPreventExitStatus");
    assert!(prevent.split_whitespace().any(|s| s == "78"), "{prevent}");
    assert_eq!(setting(&unit, "Restart"), "on-failure");

    // Run the unit's check command with this build's binary and the config file swapped.
    let run = |config: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_colo-agent"))
            .args(&pre[1..pre.len() - 1])
            .arg(config)
            .current_dir(&root)
            .output()
            .unwrap()
    };
    let good = run(Path::new("config/examples/agent.yaml"));
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("agent.yaml");
    std::fs::write(&typo, "loop:\n  peroid: 50ms\n").unwrap();
    let bad = run(&typo);
    assert_eq!(bad.status.code(), Some(78), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:2:3: loop.peroid: unknown field",
            typo.display()
        )),
        "{err}"
    );
}

#[test]
fn the_yarn_scripts_are_executable_shell_that_run_coloctl() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/yarn");
    for (name, command) in [
        ("colo-node-attributes", "node-attributes"),
        ("colo-health-check", "health-check"),
    ] {
        let path = dir.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{name} is not executable");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
        assert!(
            text.lines()
                .any(|l| l
                    == format!("exec \"${{COLOCTL:-/usr/local/bin/coloctl}}\" {command} \"$@\"")),
            "{name} does not exec coloctl {command}"
        );
        let syntax = Command::new("sh").arg("-n").arg(&path).status().unwrap();
        assert!(syntax.success(), "{name}: sh -n");
    }
}
