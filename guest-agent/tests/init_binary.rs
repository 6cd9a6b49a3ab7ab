//! The init binary on a host: it is a guest's PID 1 and refuses to run anywhere else (it would
//! mount file systems and power the machine off).

use std::process::Command;

#[test]
fn the_init_refuses_to_run_when_it_is_not_pid_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_colo-guest-init"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the PID 1 of a colo Linux guest"), "{err}");
    assert!(out.stdout.is_empty());
}
