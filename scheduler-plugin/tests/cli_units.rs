//! colo-scheduler's duration flags take colo's one grammar (`colo_config::units`, as policy
//! files and coloctl do): compound and decimal forms, and a refusal that names the spelling
//! meant, with exit 2.

use std::process::Command;

#[test]
fn stale_after_takes_colos_duration_grammar() {
    let bad = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
        .args(["--stale-after", "5 min"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid duration `5 min`"), "{err}");
    assert!(err.contains("did you mean `5m`?"), "{err}");
    // Good values get past the flags: with an unusable listen address the start fails later,
    // with exit 1, not the usage status 2.
    for good in ["2m30s", "1.5m", "180s"] {
        let o = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
            .args(["--stale-after", good, "--grpc-listen", "192.0.2.1:1"])
            .arg("--insecure-listen-any")
            .env("COLO_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(1),
            "{good}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
