//! Offline jobs: the model, validation of specs, the manager and the per-job supervisors.

pub mod manager;
pub mod model;
pub mod outcome;
pub mod paths;
mod supervisor;
pub mod validate;

pub use manager::{Budget, BudgetUse, JobFilter, JobManager, LiveJob, ManagerConfig, ManagerError};
pub use model::{EndReason, JobRecord, JobSpec, JobState, StopKind, ThrottleState};
