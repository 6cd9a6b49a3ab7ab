//! Conversions between the agent's job records and the gRPC messages (the spec's own
//! conversion is colo-proto's, `colo_proto::job`).

use colo_proto::agent as pb;

use crate::jobs::ManagerError;
use crate::jobs::model::{EndReason, JobRecord, JobState, ThrottleState};

/// The wire state.
pub fn state(s: JobState) -> pb::JobState {
    match s {
        JobState::Pending => pb::JobState::Pending,
        JobState::Starting => pb::JobState::Starting,
        JobState::Running => pb::JobState::Running,
        JobState::Paused => pb::JobState::Paused,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
        JobState::Preempted => pb::JobState::Preempted,
    }
}

/// The model state of a wire state (None for UNSPECIFIED or unknown values).
pub fn state_from(v: i32) -> Option<JobState> {
    Some(match pb::JobState::try_from(v).ok()? {
        pb::JobState::Unspecified => return None,
        pb::JobState::Pending => JobState::Pending,
        pb::JobState::Starting => JobState::Starting,
        pb::JobState::Running => JobState::Running,
        pb::JobState::Paused => JobState::Paused,
        pb::JobState::Succeeded => JobState::Succeeded,
        pb::JobState::Failed => JobState::Failed,
        pb::JobState::Cancelled => JobState::Cancelled,
        pb::JobState::Preempted => JobState::Preempted,
    })
}

/// The wire end reason.
pub fn reason(r: Option<EndReason>) -> pb::EndReason {
    match r {
        None => pb::EndReason::Unspecified,
        Some(EndReason::Completed) => pb::EndReason::Completed,
        Some(EndReason::GuestExitNonzero) => pb::EndReason::GuestExitNonzero,
        Some(EndReason::GuestCrashed) => pb::EndReason::GuestCrashed,
        Some(EndReason::VmmFailed) => pb::EndReason::VmmFailed,
        Some(EndReason::Cancelled) => pb::EndReason::Cancelled,
        Some(EndReason::Evicted) => pb::EndReason::Evicted,
        Some(EndReason::DeadlineExceeded) => pb::EndReason::DeadlineExceeded,
        Some(EndReason::NodeLost) => pb::EndReason::NodeLost,
        Some(EndReason::AgentShutdown) => pb::EndReason::AgentShutdown,
        Some(EndReason::OomKilled) => pb::EndReason::OomKilled,
    }
}

/// The wire throttle state.
pub fn throttle(t: &ThrottleState) -> pb::ThrottleState {
    pb::ThrottleState {
        vcpu_quota_millicores: t.vcpu_quota_millicores,
        sched_idle: t.sched_idle,
        io_bandwidth_bps: t.io_bandwidth_bps,
        io_iops: t.io_iops,
        memory_limit_bytes: t.memory_limit_bytes,
        paused: t.paused,
        reason: t.reason.clone(),
        changed_unix_ms: t.changed_unix_ms,
    }
}

/// The wire job.
pub fn job(r: &JobRecord, t: Option<&ThrottleState>) -> pb::Job {
    pb::Job {
        id: r.id.clone(),
        spec: Some(pb::JobSpec::from(&r.spec)),
        state: state(r.state) as i32,
        end_reason: reason(r.end_reason) as i32,
        message: r.message.clone(),
        exit_code: r.exit_code,
        created_unix_ms: r.created_unix_ms,
        started_unix_ms: r.started_unix_ms,
        ended_unix_ms: r.ended_unix_ms,
        vmm_pid: r.vmm.as_ref().map_or(0, |v| v.pid),
        throttle: t.map(throttle),
        progress: r.progress,
        cpu_seconds: r.cpu_seconds,
    }
}

/// The gRPC status of a manager error.
pub fn status(e: ManagerError) -> tonic::Status {
    let msg = e.to_string();
    match e {
        ManagerError::Invalid(_) => tonic::Status::invalid_argument(msg),
        ManagerError::NotFound(_) => tonic::Status::not_found(msg),
        ManagerError::OverBudget(_) => tonic::Status::resource_exhausted(msg),
        ManagerError::KeyConflict { .. } => tonic::Status::already_exists(msg),
        ManagerError::WrongState { .. } | ManagerError::SandboxUnavailable { .. } => {
            tonic::Status::failed_precondition(msg)
        }
        ManagerError::Control { .. } | ManagerError::ShuttingDown => {
            tonic::Status::unavailable(msg)
        }
        ManagerError::Registry(_) => tonic::Status::internal(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in JobState::ALL {
            assert_eq!(state_from(state(s) as i32), Some(s));
        }
        assert_eq!(state_from(0), None);
        assert_eq!(state_from(99), None);
    }

    #[test]
    fn an_oom_kill_has_one_name_stored_and_on_the_wire() {
        let wire = reason(Some(EndReason::OomKilled));
        assert_eq!(wire.as_str_name(), "END_REASON_OOM_KILLED");
        let stored = serde_json::to_string(&EndReason::OomKilled).unwrap();
        assert_eq!(stored, r#""oom_killed""#);
    }

    #[test]
    fn errors_map_to_codes() {
        let s = status(ManagerError::OverBudget("x".into()));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let s = status(ManagerError::NotFound("j".into()));
        assert_eq!(s.code(), tonic::Code::NotFound);
    }
}
