//! How a Linux guest's program ended, as its in-guest agent reported it (kept by the agent in
//! the job's `guest/` directory, so it survives an agent restart), and the job's outcome from
//! it and the VMM's exit record.

use std::path::Path;

use colo_guest_agent::ExitStatus;
use serde::{Deserialize, Serialize};

use crate::jobs::launch::WaitStatus;
use crate::jobs::model::{EndReason, JobState, StopIntent};
use crate::jobs::outcome::{self, Outcome};
use crate::jobs::runtime::microvm::ExitRecord;

/// The file in `guest/`.
pub const FILE: &str = "exit.json";

/// What the in-guest agent reported last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestExit {
    /// The program exited with this code.
    Code(u8),
    /// A signal killed the program.
    Signal(u8),
    /// The in-guest agent failed (the program may never have started).
    Error(String),
}

impl From<ExitStatus> for GuestExit {
    fn from(s: ExitStatus) -> Self {
        match s {
            ExitStatus::Code(c) => Self::Code(c),
            ExitStatus::Signal(s) => Self::Signal(s),
        }
    }
}

impl GuestExit {
    /// Writes the record (atomically: a temporary file renamed over it).
    pub fn write(&self, guest_dir: &Path) -> std::io::Result<()> {
        let tmp = guest_dir.join("exit.json.tmp");
        let body = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, guest_dir.join(FILE))
    }

    /// Reads the record, if the guest reported an end.
    pub fn read(guest_dir: &Path) -> Option<Self> {
        let body = std::fs::read(guest_dir.join(FILE)).ok()?;
        serde_json::from_slice(&body).ok()
    }

    fn describe(&self) -> String {
        match self {
            Self::Code(137) => "the program exited with code 137 (128 + 9: a process it \
                                waited for was killed by SIGKILL, most often by the guest's OOM \
                                killer when the job outgrows the guest's memory; see the guest's \
                                console, coloctl logs --vmm)"
                .into(),
            Self::Code(c) => format!("the program exited with code {c}"),
            Self::Signal(9) => "the program was killed by signal 9 (SIGKILL: in a guest, most \
                                often its OOM killer, when the program outgrows the guest's \
                                memory; see the job's serial log)"
                .into(),
            Self::Signal(s) => format!("the program was killed by signal {s}"),
            Self::Error(m) => format!("the guest could not run the program: {m}"),
        }
    }
}

/// The outcome of a Linux-guest program whose VMM has ended: the stop the agent asked for wins,
/// then the program's end as the guest reported it, then the VMM's own record.
pub fn decide(
    guest_dir: &Path,
    record: Option<&ExitRecord>,
    wait: Option<WaitStatus>,
    intent: Option<&StopIntent>,
) -> Outcome {
    let guest = GuestExit::read(guest_dir);
    let mut o = match (&guest, intent) {
        (_, Some(i)) => {
            let how = guest
                .as_ref()
                .map_or_else(|| "the VM ended".to_string(), GuestExit::describe);
            let (state, reason, message) = outcome::from_intent(i, &how);
            Outcome::plain(state, reason, message)
        }
        (None, None) => {
            let mut o = outcome::decide(record, wait, None);
            if o.state == JobState::Succeeded {
                // The VM powered off, but the guest never said how the program ended.
                o = Outcome::plain(
                    JobState::Failed,
                    EndReason::GuestCrashed,
                    "the guest powered off without reporting how the program ended; see the \
                     job's serial log (coloctl logs --vmm)",
                );
            }
            o
        }
        (Some(g), None) => {
            let (state, reason, code) = match g {
                GuestExit::Code(0) => (JobState::Succeeded, EndReason::Completed, Some(0)),
                GuestExit::Code(c) => (
                    JobState::Failed,
                    EndReason::GuestExitNonzero,
                    Some(i32::from(*c)),
                ),
                GuestExit::Signal(s) => (
                    JobState::Failed,
                    EndReason::GuestExitNonzero,
                    Some(128 + i32::from(*s)),
                ),
                GuestExit::Error(_) => (JobState::Failed, EndReason::GuestCrashed, None),
            };
            let mut o = Outcome::plain(state, reason, g.describe());
            o.exit_code = code;
            o
        }
    };
    if let Some(r) = record {
        o.cpu_seconds = Some(r.cpu_seconds);
        o.ended_unix_ms = Some(r.ended_unix_ms);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::StopKind;
    use crate::jobs::runtime::microvm::ExitReason;

    fn powered_off() -> ExitRecord {
        ExitRecord {
            exit_code: 0,
            reason: ExitReason::GuestExit,
            message: "the guest powered off".into(),
            ended_unix_ms: 5,
            cpu_seconds: 0.5,
            pid: 1,
            dropped: Default::default(),
        }
    }

    #[test]
    fn the_programs_end_decides_unless_the_agent_stopped_it() {
        let d = tempfile::tempdir().unwrap();
        let r = powered_off();
        // No report: a guest that powered off without saying fails.
        let o = decide(d.path(), Some(&r), None, None);
        assert_eq!(
            (o.state, o.reason),
            (JobState::Failed, EndReason::GuestCrashed)
        );
        GuestExit::Code(7).write(d.path()).unwrap();
        let o = decide(d.path(), Some(&r), None, None);
        assert_eq!(
            (o.state, o.reason, o.exit_code),
            (JobState::Failed, EndReason::GuestExitNonzero, Some(7))
        );
        assert_eq!(o.cpu_seconds, Some(0.5));
        GuestExit::Code(0).write(d.path()).unwrap();
        let o = decide(d.path(), Some(&r), None, None);
        assert_eq!((o.state, o.exit_code), (JobState::Succeeded, Some(0)));
        GuestExit::Signal(9).write(d.path()).unwrap();
        let o = decide(d.path(), Some(&r), None, None);
        assert_eq!(o.exit_code, Some(137));
        assert!(o.message.contains("OOM killer"), "{}", o.message);
        // A cancel wins over the program's SIGTERM death.
        GuestExit::Signal(15).write(d.path()).unwrap();
        let cancel = StopIntent {
            kind: StopKind::Cancel,
            reason: "user".into(),
            requested_unix_ms: 1,
        };
        let o = decide(d.path(), Some(&r), None, Some(&cancel));
        assert_eq!(o.state, JobState::Cancelled, "{o:?}");
        assert!(o.message.contains("signal 15"), "{}", o.message);
        GuestExit::Error("cannot start /x".into())
            .write(d.path())
            .unwrap();
        let o = decide(d.path(), Some(&r), None, None);
        assert_eq!(o.reason, EndReason::GuestCrashed);
        assert!(o.message.contains("cannot start /x"), "{}", o.message);
    }
}
