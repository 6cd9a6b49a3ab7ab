//! Whether the machine can run the tests that need KVM or root.

use std::fs::OpenOptions;

/// Returns true when `/dev/kvm` can be opened read-write.
///
/// When it cannot, prints a loud `SKIPPED` line naming the test, or panics when
/// `COLO_REQUIRE_KVM=1` is set (CI sets it, so a missing KVM fails CI instead of passing quietly).
pub fn kvm_or_skip(test: &str) -> bool {
    match OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            let required = std::env::var("COLO_REQUIRE_KVM").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: /dev/kvm is not usable ({e}) but COLO_REQUIRE_KVM=1 demands it"
            );
            eprintln!("\n*** SKIPPED {test}: /dev/kvm is not usable ({e}) ***\n");
            false
        }
    }
}

/// Returns true when the test runs as root (needed to write cgroups); otherwise prints a loud
/// `SKIPPED` line, or panics when `COLO_REQUIRE_KVM=1` (CI runs as root and must not skip).
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    let required = std::env::var("COLO_REQUIRE_KVM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: needs root to write cgroups, and COLO_REQUIRE_KVM=1 is set"
    );
    eprintln!("\n*** SKIPPED {test}: needs root to write cgroups ***\n");
    false
}
