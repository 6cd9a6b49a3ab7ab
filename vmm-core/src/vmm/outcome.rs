//! How a running VM ended, as decided by a vCPU, the control socket or a signal, and the exit
//! record that says so. (Public for what stands in for colo-vmm in tests, which must end the
//! same way.)

use crate::exit::{
    DroppedBytes, EXIT_BAD_INPUT, EXIT_GUEST_CRASH, EXIT_GUEST_RESET, EXIT_SHUTDOWN, EXIT_SIGNAL,
    EXIT_VMM_ERROR, ExitReason, ExitRecord, GUEST_EXIT_CODE_MAX,
};

/// The end of a VM: its exit status, reason and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Why it ended.
    pub reason: ExitReason,
    /// The VMM's exit status.
    pub exit_code: i32,
    /// One line for the log and the exit record.
    pub message: String,
}

impl Outcome {
    /// The guest wrote `value` to the debug-exit port.
    pub fn guest_exit(value: u32) -> Self {
        match i32::try_from(value) {
            Ok(code) if code <= GUEST_EXIT_CODE_MAX => Self {
                reason: ExitReason::GuestExit,
                exit_code: code,
                message: format!("guest wrote {code} to port 0xf4"),
            },
            _ => Self {
                reason: ExitReason::GuestCrash,
                exit_code: EXIT_GUEST_CRASH,
                message: format!(
                    "guest wrote {value} to port 0xf4, outside 0..={GUEST_EXIT_CODE_MAX}"
                ),
            },
        }
    }

    /// The guest reset itself.
    pub fn guest_reset(how: &str) -> Self {
        Self {
            reason: ExitReason::GuestReset,
            exit_code: EXIT_GUEST_RESET,
            message: format!("guest reset ({how})"),
        }
    }

    /// The guest crashed.
    pub fn guest_crash(what: String) -> Self {
        Self {
            reason: ExitReason::GuestCrash,
            exit_code: EXIT_GUEST_CRASH,
            message: what,
        }
    }

    /// The `shutdown` control request.
    pub fn shutdown() -> Self {
        Self {
            reason: ExitReason::Shutdown,
            exit_code: EXIT_SHUTDOWN,
            message: "shutdown requested on the control socket".into(),
        }
    }

    /// A terminating signal.
    pub fn signal(name: &str) -> Self {
        Self {
            reason: ExitReason::Signal,
            exit_code: EXIT_SIGNAL,
            message: format!("received {name}"),
        }
    }

    /// A host-side failure while running.
    pub fn vmm_error(what: String) -> Self {
        Self {
            reason: ExitReason::VmmError,
            exit_code: EXIT_VMM_ERROR,
            message: what,
        }
    }

    /// Refused before the guest ran: the caller's mistake.
    pub fn bad_input(what: impl Into<String>) -> Self {
        Self {
            reason: ExitReason::VmmError,
            exit_code: EXIT_BAD_INPUT,
            message: what.into(),
        }
    }

    /// The exit record of this end, stamped now, for this process, which used `cpu_seconds`
    /// and dropped `dropped` bytes of output.
    pub fn exit_record(&self, cpu_seconds: f64, dropped: DroppedBytes) -> ExitRecord {
        ExitRecord {
            exit_code: self.exit_code,
            reason: self.reason,
            message: self.message.clone(),
            ended_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            cpu_seconds,
            pid: std::process::id(),
            dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_codes_pass_through_only_in_range() {
        assert_eq!(Outcome::guest_exit(3).exit_code, 3);
        assert_eq!(Outcome::guest_exit(63).exit_code, 63);
        let big = Outcome::guest_exit(64);
        assert_eq!(big.exit_code, EXIT_GUEST_CRASH);
        assert_eq!(big.reason, ExitReason::GuestCrash);
    }
}
