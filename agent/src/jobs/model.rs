//! The job as the agent keeps it: its spec, state, outcome and the VMM behind it. This is
//! what the registry stores (JSON, stable field names) and what the API reports. The spec is
//! colo's one job model, shared with coloctl and the wire conversion ([`colo_config::job`]).

use serde::{Deserialize, Serialize};

pub use colo_config::job::{
    DiskSpec, Guest, JobSpec, LinuxGuest, QosClass, ThrottleState, WorkloadGuest,
};

pub use crate::host::clock::now_ms;

use crate::jobs::procinfo::ProcessIdentity;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Admitted, not started yet.
    Pending,
    /// Its cgroups are made and its VMM is starting.
    Starting,
    /// The VM runs.
    Running,
    /// The VM's vCPUs are stopped (by the QoS loop).
    Paused,
    /// The guest exited with code 0.
    Succeeded,
    /// The guest failed, crashed, the VMM failed or the node lost it.
    Failed,
    /// Stopped through CancelJob.
    Cancelled,
    /// Evicted (or drained by an agent shutdown); may be retried on another node.
    Preempted,
}

impl JobState {
    /// True for the states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Preempted
        )
    }

    /// Every state, in life order.
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Paused,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Preempted,
    ];

    /// The lower-case name (`running`), as in metrics and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Preempted => "preempted",
        }
    }

    /// Whether the state machine allows `self → next`.
    pub fn can_become(self, next: Self) -> bool {
        use JobState::*;
        match (self, next) {
            (Pending, Starting) => true,
            (Pending, Cancelled | Failed | Preempted) => true,
            (Starting, Running) => true,
            (Running, Paused) | (Paused, Running) => true,
            (Starting | Running | Paused, n) if n.is_terminal() => true,
            _ => false,
        }
    }
}

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The guest exited with code 0.
    Completed,
    /// The guest exited with a non-zero code.
    GuestExitNonzero,
    /// The guest reset, triple-faulted or KVM failed internally.
    GuestCrashed,
    /// The VMM could not start, failed or was killed.
    VmmFailed,
    /// Cancelled through CancelJob.
    Cancelled,
    /// Evicted by the QoS policy.
    Evicted,
    /// The deadline passed.
    DeadlineExceeded,
    /// The VMM vanished without an exit record (node reboot).
    NodeLost,
    /// The agent shut down with drain-on-exit and stopped the job.
    AgentShutdown,
    /// A process of the job was killed for exceeding its memory limit.
    OomKilled,
}

/// Why the agent asked a VM to stop; decides the end state when it then ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopIntent {
    /// The kind of stop.
    pub kind: StopKind,
    /// Free text (the caller's reason).
    pub reason: String,
    /// When it was asked (Unix ms).
    pub requested_unix_ms: i64,
}

/// The kinds of stop the agent requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// CancelJob.
    Cancel,
    /// The QoS loop evicts it.
    Evict,
    /// Its deadline passed.
    Deadline,
    /// The agent drains on shutdown.
    AgentShutdown,
}

impl StopKind {
    /// The end state and reason of a job stopped for this cause.
    pub fn outcome(self) -> (JobState, EndReason) {
        match self {
            Self::Cancel => (JobState::Cancelled, EndReason::Cancelled),
            Self::Evict => (JobState::Preempted, EndReason::Evicted),
            Self::Deadline => (JobState::Failed, EndReason::DeadlineExceeded),
            Self::AgentShutdown => (JobState::Preempted, EndReason::AgentShutdown),
        }
    }
}

/// One job, as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Format version of this record.
    pub format: u32,
    /// The job id (also the name of its cgroup and state directory).
    pub id: String,
    /// The spec.
    pub spec: JobSpec,
    /// The state.
    pub state: JobState,
    /// Why it ended (terminal states only).
    #[serde(default)]
    pub end_reason: Option<EndReason>,
    /// What happened, for humans.
    #[serde(default)]
    pub message: String,
    /// The guest's exit code, when it reported one.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When it was submitted (Unix ms).
    pub created_unix_ms: i64,
    /// When its VM started running (Unix ms, 0 = not yet).
    #[serde(default)]
    pub started_unix_ms: i64,
    /// When it ended (Unix ms, 0 = not yet).
    #[serde(default)]
    pub ended_unix_ms: i64,
    /// The VMM process, once started.
    #[serde(default)]
    pub vmm: Option<ProcessIdentity>,
    /// A stop the agent asked for and its cause.
    #[serde(default)]
    pub stop: Option<StopIntent>,
    /// CPU seconds used by the VM (final once ended).
    #[serde(default)]
    pub cpu_seconds: f64,
    /// The guest's progress counter, last seen.
    #[serde(default)]
    pub progress: u64,
    /// The uid (and gid) its jailed VMM runs as (`offline.jail`), once started.
    #[serde(default)]
    pub sandbox_uid: Option<u32>,
}

impl JobRecord {
    /// The current record format.
    pub const FORMAT: u32 = 1;

    /// A new Pending job.
    pub fn new(id: String, spec: JobSpec, now_ms: i64) -> Self {
        Self {
            format: Self::FORMAT,
            id,
            spec,
            state: JobState::Pending,
            end_reason: None,
            message: String::new(),
            exit_code: None,
            created_unix_ms: now_ms,
            started_unix_ms: 0,
            ended_unix_ms: 0,
            vmm: None,
            stop: None,
            cpu_seconds: 0.0,
            progress: 0,
            sandbox_uid: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_edges() {
        use JobState::*;
        assert!(Pending.can_become(Starting));
        assert!(Starting.can_become(Running));
        assert!(Starting.can_become(Succeeded));
        assert!(Running.can_become(Paused) && Paused.can_become(Running));
        assert!(Paused.can_become(Preempted));
        assert!(!Succeeded.can_become(Running));
        assert!(!Running.can_become(Pending));
        assert!(!Pending.can_become(Running));
        for s in JobState::ALL {
            assert_eq!(
                s.is_terminal(),
                [Succeeded, Failed, Cancelled, Preempted].contains(&s)
            );
        }
    }

    // The workload guest's command line is tested beside it, in colo-config's job model.
    #[test]
    fn stop_outcomes() {
        assert_eq!(
            StopKind::Evict.outcome(),
            (JobState::Preempted, EndReason::Evicted)
        );
        assert_eq!(StopKind::Deadline.outcome().0, JobState::Failed);
    }

    #[test]
    fn record_round_trips_as_json() {
        let spec = JobSpec {
            vcpus: 1,
            memory_mib: 32,
            ..JobSpec::new("k", Guest::Workload(WorkloadGuest::default()))
        };
        let r = JobRecord::new("j".into(), spec, 5);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"state\":\"pending\""), "{text}");
        let back: JobRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
