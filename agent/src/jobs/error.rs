//! The job side's errors, shown to API callers: each names the job, the rule and the fix.

use super::model::JobState;
use super::registry::RegistryError;
use super::validate::FieldError;

/// Errors of the job manager.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The request broke a rule.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// No such job.
    #[error("job {0} not found (finished jobs are forgotten after the retention period)")]
    NotFound(String),
    /// The job does not fit the node's offline budget.
    #[error("{0}")]
    OverBudget(String),
    /// The idempotency key was used before with a different spec.
    #[error(
        "idempotency key {key:?} already names job {id} with a different spec; use a new key \
         for a new job"
    )]
    KeyConflict {
        /// The key.
        key: String,
        /// The job it names.
        id: String,
    },
    /// The job is not in a state that allows the request.
    #[error("job {id} is {state}: {what}")]
    WrongState {
        /// The job.
        id: String,
        /// Its state.
        state: &'static str,
        /// What was refused.
        what: String,
    },
    /// The VMM's control socket failed.
    #[error("job {id}: {error}")]
    Control {
        /// The job.
        id: String,
        /// The error.
        error: String,
    },
    /// The registry could not be written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The node does not offer the job's sandbox.
    #[error(
        "this node cannot run {sandbox} jobs: {why}; submit it to a node that offers them (coloctl node lists a node's sandboxes)"
    )]
    SandboxUnavailable {
        /// The sandbox kind.
        sandbox: &'static str,
        /// Why the node lacks it, and the fix.
        why: String,
    },
    /// The agent is shutting down.
    #[error("the agent is shutting down; retry on another node or after it restarts")]
    ShuttingDown,
}

impl ManagerError {
    /// A request to a job that has ended (or is ending) and takes no more commands.
    pub(super) fn ended(id: &str, state: JobState) -> Self {
        Self::WrongState {
            id: id.into(),
            state: state.name(),
            what: "it has already ended".into(),
        }
    }
}
