//! `packaging/colo-agent.service` and `packaging/colo.slice` pass `systemd-analyze verify`
//! (Debian package `systemd`), with no warning, and keep the settings the agent depends on.

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
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line} missing from the unit"
        );
    }
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
