//! How a job ended, decided from what the agent knows: the VMM's exit record, its wait status
//! (when the agent is its parent) and the stop the agent asked for.

use super::model::{EndReason, JobState, StopIntent};
use crate::jobs::launch::WaitStatus;
use crate::jobs::runtime::microvm::{ExitReason, ExitRecord};

/// The end of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Terminal state.
    pub state: JobState,
    /// Why.
    pub reason: EndReason,
    /// The guest's exit code, when it reported one.
    pub exit_code: Option<i32>,
    /// For humans.
    pub message: String,
    /// CPU seconds of the VMM, when known from the exit record.
    pub cpu_seconds: Option<f64>,
    /// When it ended (Unix ms), when known from the exit record.
    pub ended_unix_ms: Option<i64>,
}

impl Outcome {
    /// An outcome without a VMM record.
    pub fn plain(state: JobState, reason: EndReason, message: impl Into<String>) -> Self {
        Self {
            state,
            reason,
            exit_code: None,
            message: message.into(),
            cpu_seconds: None,
            ended_unix_ms: None,
        }
    }
}

/// The end a stop asked for, and its message (`how`: what the sandbox did).
pub(crate) fn from_intent(intent: &StopIntent, how: &str) -> (JobState, EndReason, String) {
    let (state, reason) = intent.kind.outcome();
    let why = if intent.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", intent.reason)
    };
    (
        state,
        reason,
        format!("{:?} requested{why} ({how})", intent.kind).to_lowercase(),
    )
}

/// Decides the outcome of a VMM that has ended.
pub fn decide(
    record: Option<&ExitRecord>,
    wait: Option<WaitStatus>,
    intent: Option<&StopIntent>,
) -> Outcome {
    if let Some(r) = record {
        let mut o = match r.reason {
            ExitReason::GuestExit if r.exit_code == 0 => Outcome::plain(
                JobState::Succeeded,
                EndReason::Completed,
                "the guest exited with code 0",
            ),
            ExitReason::GuestExit => Outcome::plain(
                JobState::Failed,
                EndReason::GuestExitNonzero,
                format!("the guest exited with code {}", r.exit_code),
            ),
            ExitReason::GuestReset | ExitReason::GuestCrash => {
                Outcome::plain(JobState::Failed, EndReason::GuestCrashed, r.message.clone())
            }
            ExitReason::Shutdown | ExitReason::Signal => match intent {
                Some(i) => {
                    let (s, reason, m) = from_intent(i, &r.message);
                    Outcome::plain(s, reason, m)
                }
                None => Outcome::plain(
                    JobState::Failed,
                    EndReason::VmmFailed,
                    format!(
                        "the VMM was stopped by someone other than the agent: {}",
                        r.message
                    ),
                ),
            },
            ExitReason::VmmError => Outcome::plain(
                JobState::Failed,
                EndReason::VmmFailed,
                format!("the VMM failed (status {}): {}", r.exit_code, r.message),
            ),
        };
        if r.reason == ExitReason::GuestExit {
            o.exit_code = Some(r.exit_code);
        }
        o.cpu_seconds = Some(r.cpu_seconds);
        o.ended_unix_ms = Some(r.ended_unix_ms);
        return o;
    }
    match (wait, intent) {
        (Some(WaitStatus::Signaled(sig)), Some(i)) => {
            let (s, reason, m) = from_intent(i, &format!("VMM killed by signal {sig}"));
            Outcome::plain(s, reason, m)
        }
        (None, Some(i)) => {
            let (s, reason, m) = from_intent(i, "VMM ended");
            Outcome::plain(s, reason, m)
        }
        (Some(WaitStatus::Signaled(sig)), None) => Outcome::plain(
            JobState::Failed,
            EndReason::VmmFailed,
            format!("the VMM was killed by signal {sig} and left no exit record"),
        ),
        (Some(WaitStatus::Exited(code)), intent) => {
            let mut o = Outcome::plain(
                JobState::Failed,
                EndReason::VmmFailed,
                format!("the VMM exited with status {code} and left no exit record; see vmm.out"),
            );
            if let Some(i) = intent {
                let (s, reason, m) = from_intent(i, &format!("VMM exited with status {code}"));
                o = Outcome::plain(s, reason, m);
            }
            o
        }
        (None, None) => Outcome::plain(
            JobState::Failed,
            EndReason::VmmFailed,
            "the VMM ended without an exit record",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::StopKind;

    fn rec(reason: ExitReason, code: i32) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            reason,
            message: "m".into(),
            ended_unix_ms: 9,
            cpu_seconds: 1.5,
            pid: 1,
            dropped: Default::default(),
        }
    }

    fn intent(kind: StopKind) -> StopIntent {
        StopIntent {
            kind,
            reason: "because".into(),
            requested_unix_ms: 1,
        }
    }

    #[test]
    fn guest_exits_keep_their_code() {
        let o = decide(Some(&rec(ExitReason::GuestExit, 0)), None, None);
        assert_eq!(
            (o.state, o.reason, o.exit_code),
            (JobState::Succeeded, EndReason::Completed, Some(0))
        );
        let o = decide(
            Some(&rec(ExitReason::GuestExit, 7)),
            Some(WaitStatus::Exited(7)),
            None,
        );
        assert_eq!(
            (o.state, o.reason, o.exit_code),
            (JobState::Failed, EndReason::GuestExitNonzero, Some(7))
        );
        assert_eq!(o.cpu_seconds, Some(1.5));
        // A guest that finished on its own while a cancel was in flight keeps its own outcome.
        let o = decide(
            Some(&rec(ExitReason::GuestExit, 0)),
            None,
            Some(&intent(StopKind::Cancel)),
        );
        assert_eq!(o.state, JobState::Succeeded);
    }

    #[test]
    fn stops_follow_the_intent() {
        let o = decide(
            Some(&rec(ExitReason::Shutdown, 67)),
            None,
            Some(&intent(StopKind::Cancel)),
        );
        assert_eq!(
            (o.state, o.reason, o.exit_code),
            (JobState::Cancelled, EndReason::Cancelled, None)
        );
        assert!(o.message.contains("because"), "{}", o.message);
        let o = decide(
            None,
            Some(WaitStatus::Signaled(9)),
            Some(&intent(StopKind::Evict)),
        );
        assert_eq!(
            (o.state, o.reason),
            (JobState::Preempted, EndReason::Evicted)
        );
        let o = decide(None, None, Some(&intent(StopKind::Deadline)));
        assert_eq!(
            (o.state, o.reason),
            (JobState::Failed, EndReason::DeadlineExceeded)
        );
        let o = decide(Some(&rec(ExitReason::Signal, 68)), None, None);
        assert_eq!(
            (o.state, o.reason),
            (JobState::Failed, EndReason::VmmFailed)
        );
    }

    #[test]
    fn failures_without_records() {
        let o = decide(Some(&rec(ExitReason::GuestCrash, 66)), None, None);
        assert_eq!(o.reason, EndReason::GuestCrashed);
        let o = decide(Some(&rec(ExitReason::VmmError, 64)), None, None);
        assert_eq!(o.reason, EndReason::VmmFailed);
        let o = decide(None, Some(WaitStatus::Signaled(11)), None);
        assert!(o.message.contains("signal 11"));
        let o = decide(None, Some(WaitStatus::Exited(101)), None);
        assert!(o.message.contains("status 101"));
    }
}
