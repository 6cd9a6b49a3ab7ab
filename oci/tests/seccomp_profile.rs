//! Converts the containers-common profile installed on this host with the default capability
//! set of Podman and Docker, and checks what a container may and may not call.

use std::path::Path;

use colo_oci::seccomp::{DEFAULT_PROFILE, load_containers_profile, running_kernel};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

/// The container ecosystem's default capability set (what colo grants a container).
const DEFAULT_CAPS: &[&str] = colo_oci::bundle::DEFAULT_CAPABILITIES;

/// Whether a call of `name` with no argument condition is allowed.
fn allowed_unconditionally(seccomp: &LinuxSeccomp, name: &str) -> bool {
    seccomp.syscalls().iter().flatten().any(|rule| {
        rule.action() == LinuxSeccompAction::ScmpActAllow
            && rule.args().as_ref().is_none_or(Vec::is_empty)
            && rule.names().iter().any(|n| n == name)
    })
}

fn named(seccomp: &LinuxSeccomp, name: &str) -> usize {
    seccomp
        .syscalls()
        .iter()
        .flatten()
        .filter(|rule| rule.names().iter().any(|n| n == name))
        .count()
}

#[test]
fn the_installed_profile_converts_with_the_default_caps() {
    if !Path::new(DEFAULT_PROFILE).exists() {
        eprintln!(
            "SKIPPED: {DEFAULT_PROFILE} is absent (install golang-github-containers-common-dev)"
        );
        return;
    }
    let seccomp =
        load_containers_profile(Path::new(DEFAULT_PROFILE), DEFAULT_CAPS, running_kernel())
            .expect("the installed profile converts");
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(
        seccomp.default_errno_ret(),
        Some(38),
        "ENOSYS for unknown calls"
    );

    for call in ["read", "write", "execve", "clone", "chroot", "exit_group"] {
        assert!(
            allowed_unconditionally(&seccomp, call),
            "{call} must be allowed"
        );
    }
    // Calls the default capabilities do not cover are refused by a rule (EPERM) or by the
    // default action (ENOSYS). containers-common's profile (unlike Docker's) allows `mount`,
    // `umount2` and `reboot` and leaves them to the missing CAP_SYS_ADMIN and CAP_SYS_BOOT.
    for call in [
        "kexec_load",
        "init_module",
        "bpf",
        "open_by_handle_at",
        "swapon",
        "userfaultfd",
    ] {
        assert!(
            !allowed_unconditionally(&seccomp, call),
            "{call} must not be allowed"
        );
    }
    for call in ["kexec_load", "swapon", "init_module"] {
        assert!(
            seccomp.syscalls().iter().flatten().any(|rule| {
                rule.action() == LinuxSeccompAction::ScmpActErrno
                    && rule.errno_ret() == Some(1)
                    && rule.names().iter().any(|n| n == call)
            }),
            "{call} gets EPERM"
        );
    }
    // chroot: the allow rule (CAP_SYS_CHROOT granted) is kept, its EPERM twin dropped.
    assert_eq!(named(&seccomp, "chroot"), 1);
    // personality is allowed only for some arguments.
    let personality: Vec<_> = seccomp
        .syscalls()
        .iter()
        .flatten()
        .filter(|rule| rule.names().iter().any(|n| n == "personality"))
        .collect();
    assert!(personality.len() >= 3, "personality argument rules kept");
    assert!(
        personality
            .iter()
            .all(|r| r.args().as_ref().is_some_and(|a| a.len() == 1))
    );
    #[cfg(target_arch = "x86_64")]
    {
        assert!(allowed_unconditionally(&seccomp, "arch_prctl"));
        assert!(allowed_unconditionally(&seccomp, "modify_ldt"));
        assert!(!allowed_unconditionally(&seccomp, "s390_runtime_instr"));
        assert_eq!(seccomp.architectures().as_ref().map(Vec::len), Some(3));
    }
    // Without CAP_AUDIT_WRITE, netlink audit sockets get EINVAL.
    assert!(seccomp.syscalls().iter().flatten().any(|rule| {
        rule.names().iter().any(|n| n == "socket") && rule.errno_ret() == Some(22)
    }));
}
