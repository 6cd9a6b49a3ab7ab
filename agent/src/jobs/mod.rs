//! Offline jobs: admission, one supervisor per live job, and what they share.
//!
//! * [`JobManager`] admits jobs against the budget and answers the API and the QoS loop;
//!   each live job has a supervisor task (`supervisor/`), the only writer of its record. Both
//!   sit on the job table ([`store`]); neither reaches into the other.
//! * A job runs in a [`runtime::Sandbox`] (a MicroVM today) launched into its cgroups by
//!   [`launch`]; after an agent restart its process is found again by [`procinfo`] identity.
//! * [`model`] is the job spec and record, [`validate`] and [`paths`] check a spec and open
//!   its files beneath the operator's roots, [`registry`] keeps the records on disk and
//!   [`outcome`] decides how a job ended.

pub mod config;
pub mod error;
pub mod launch;
pub mod manager;
pub mod model;
pub mod outcome;
pub mod paths;
pub mod procinfo;
pub mod registry;
pub mod runtime;
mod store;
mod supervisor;
pub mod validate;

pub use config::{Budget, ManagerConfig};
pub use error::ManagerError;
pub use manager::{BudgetUse, JobFilter, JobManager, LiveJob};
pub use model::{EndReason, JobRecord, JobSpec, JobState, StopKind, ThrottleState};
