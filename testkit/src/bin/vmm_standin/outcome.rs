//! How the VM ended, in colo-vmm's terms (`vmm-core/src/exit.rs`): the exit status, the reason
//! and the message of the exit record, decided from what the stand-in asked for, QEMU's wait
//! status and the reason of QEMU's last `SHUTDOWN` event.
//!
//! A Linux guest ends under colo-vmm as a reset: colo-vmm has no ACPI, so colo-guest-init
//! restarts the kernel (a power-off would only halt it), which resets through the i8042, and
//! colo-vmm reports `guest_reset` (65). Under QEMU without ACPI the restart is QEMU's
//! `guest-reset`, reported the same; with ACPI colo-guest-init powers off (`guest-shutdown`),
//! and the stand-in reports that as colo-vmm would, `guest_reset` with status 65, saying so in
//! the message.

use std::path::Path;

pub use colo_vmm::Outcome;

use crate::output::Log;
use crate::vm::Asked;

/// How QEMU's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuExit {
    /// It exited with this status.
    Status(i32),
    /// A signal killed it.
    Signal(i32),
}

/// The outcome of a QEMU that ran the guest and has ended: `asked` is what the stand-in asked
/// for, `shutdown` the reason of QEMU's last `SHUTDOWN` event, `qemu_said` its last messages.
pub fn decide(
    asked: Option<Asked>,
    exit: QemuExit,
    shutdown: Option<&str>,
    qemu_said: &str,
) -> Outcome {
    // The first end counts, as in colo-vmm: a guest that ended before the stand-in's request
    // reached QEMU ended on its own.
    let guest_first = shutdown.is_some_and(|r| r.starts_with("guest-"));
    match (asked.filter(|_| !guest_first), exit) {
        (Some(Asked::Signal(name)), _) => Outcome::signal(name),
        (Some(Asked::Shutdown), _) => Outcome::shutdown(),
        (None, QemuExit::Status(0)) => match shutdown {
            Some("guest-shutdown") => Outcome::guest_reset(
                "the guest powered itself off: QEMU reported guest-shutdown; without ACPI, as \
                 under colo-vmm, the guest ends with a reset",
            ),
            Some("guest-reset") => Outcome::guest_reset("QEMU reported guest-reset"),
            Some("guest-panic") => {
                Outcome::guest_crash("guest panic (QEMU reported guest-panic)".into())
            }
            Some(other) => Outcome::vmm_error(format!(
                "QEMU ended ({other}) though the stand-in did not ask it to"
            )),
            None => Outcome::guest_reset(
                "QEMU exited 0 without a SHUTDOWN event on QMP: taken as the guest's power-off",
            ),
        },
        (None, QemuExit::Status(code)) => Outcome::vmm_error(format!(
            "QEMU failed with status {code}: {}",
            if qemu_said.is_empty() {
                "(no message)"
            } else {
                qemu_said
            }
        )),
        (None, QemuExit::Signal(sig)) => Outcome::vmm_error(format!(
            "QEMU was killed by signal {sig} (not by the stand-in)"
        )),
    }
}

/// Logs the end and writes the exit record to `path` (if given), as colo-vmm does.
pub fn record(outcome: &Outcome, path: Option<&Path>, log: &Log) {
    log.say(&format!(
        "VM ended: {} (status {}): {}",
        outcome.reason.as_str(),
        outcome.exit_code,
        outcome.message
    ));
    let Some(path) = path else { return };
    let rec = outcome.exit_record(cpu_seconds(), log.dropped());
    if let Err(e) = rec.write_atomic(path) {
        log.say(&format!("error: cannot write the exit record: {e}"));
    }
}

/// CPU time of the stand-in and QEMU (its reaped child), user + system, seconds.
fn cpu_seconds() -> f64 {
    let used = |who| {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage.
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return 0.0;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(ru.ru_utime) + secs(ru.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use colo_vmm::ExitReason;

    #[test]
    fn a_guest_power_off_is_the_reset_colo_vmm_reports() {
        let o = decide(None, QemuExit::Status(0), Some("guest-shutdown"), "");
        assert_eq!((o.reason, o.exit_code), (ExitReason::GuestReset, 65));
        assert!(o.message.contains("powered itself off"), "{}", o.message);
        let o = decide(None, QemuExit::Status(0), Some("guest-panic"), "");
        assert_eq!((o.reason, o.exit_code), (ExitReason::GuestCrash, 66));
    }

    #[test]
    fn what_the_stand_in_asked_for_decides_over_qemu_s_end() {
        let o = decide(
            Some(Asked::Shutdown),
            QemuExit::Status(0),
            Some("host-qmp-quit"),
            "",
        );
        assert_eq!((o.reason, o.exit_code), (ExitReason::Shutdown, 67));
        let o = decide(
            Some(Asked::Signal("SIGTERM")),
            QemuExit::Signal(9),
            None,
            "",
        );
        assert_eq!((o.reason, o.exit_code), (ExitReason::Signal, 68));
        assert_eq!(o.message, "received SIGTERM");
        let late = decide(
            Some(Asked::Shutdown),
            QemuExit::Status(0),
            Some("guest-shutdown"),
            "",
        );
        assert_eq!(
            late.reason,
            ExitReason::GuestReset,
            "the guest's end came first"
        );
    }

    #[test]
    fn qemu_failures_are_vmm_errors_with_qemu_s_words() {
        let o = decide(None, QemuExit::Status(1), None, "could not load kernel");
        assert_eq!((o.reason, o.exit_code), (ExitReason::VmmError, 70));
        assert!(o.message.contains("could not load kernel"), "{}", o.message);
        let o = decide(None, QemuExit::Status(0), Some("host-signal"), "");
        assert_eq!(o.exit_code, 70);
        assert_eq!(
            decide(None, QemuExit::Signal(9), None, "").reason,
            ExitReason::VmmError
        );
    }
}
