//! The job table the manager and the supervisors both sit on: the latest snapshot of every
//! job (live, or finished and not yet forgotten), a broadcast channel per job for watchers,
//! each live job's command channel to its supervisor, and the shared cgroup tree, registry and
//! configuration. The manager reads and admits; each supervisor is the only writer of its
//! job's record and publishes it here.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::config::ManagerConfig;
use super::error::ManagerError;
use super::model::{JobRecord, StopIntent, ThrottleState};
use super::registry::{JobPaths, Registry};
use crate::host::cgroup::{CgroupTree, JobCgroup};

/// Requests to a job's supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Stop the job for this cause.
    Stop(StopIntent),
    /// Pause it.
    Pause(String, oneshot::Sender<Result<(), ManagerError>>),
    /// Resume it.
    Resume(String, oneshot::Sender<Result<(), ManagerError>>),
}

pub(crate) struct Slot {
    pub(crate) record: JobRecord,
    pub(crate) events: broadcast::Sender<JobRecord>,
    pub(crate) cmd: Option<mpsc::UnboundedSender<Command>>,
    pub(crate) throttle: ThrottleState,
    pub(crate) cgroup: Option<JobCgroup>,
}

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) by_id: BTreeMap<String, Slot>,
    pub(crate) by_key: HashMap<String, String>,
}

pub(crate) struct JobStore {
    pub(crate) cfg: ManagerConfig,
    pub(crate) cgroups: CgroupTree,
    pub(crate) registry: Registry,
    pub(crate) table: Mutex<Table>,
    /// Submissions run one at a time (the budget check and the insert are one step).
    pub(crate) submit_lock: tokio::sync::Mutex<()>,
    pub(crate) next_id: AtomicU64,
    pub(crate) start_latency: Mutex<Vec<f64>>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) supervisors: Mutex<tokio::task::JoinSet<()>>,
    /// The sandboxes this node offers, found when the manager opened.
    pub(crate) offers: Vec<super::runtime::Offer>,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager").finish_non_exhaustive()
    }
}

impl JobStore {
    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves consistent data (every update is one
        // assignment), so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a new snapshot of a job (after its supervisor persisted it).
    pub(crate) fn publish(&self, record: &JobRecord) {
        let mut t = self.table();
        if let Some(slot) = t.by_id.get_mut(&record.id) {
            slot.record = record.clone();
            if record.state.is_terminal() {
                slot.cmd = None;
                slot.cgroup = None;
            }
            // No receivers is fine.
            let _ = slot.events.send(record.clone());
        }
    }

    /// A uid of `range` that no other unfinished job holds, recorded in job `id`'s snapshot in
    /// the same step (so two starts never pick the same one); `None` when all are taken.
    pub(crate) fn claim_sandbox_uid(
        &self,
        id: &str,
        range: super::config::JailRange,
    ) -> Option<u32> {
        let mut t = self.table();
        let taken: std::collections::HashSet<u32> = t
            .by_id
            .iter()
            .filter(|(k, s)| k.as_str() != id && !s.record.state.is_terminal())
            .filter_map(|(_, s)| s.record.sandbox_uid)
            .collect();
        let end = range.base.saturating_add(range.count);
        let uid = (range.base..end).find(|u| !taken.contains(u))?;
        t.by_id.get_mut(id)?.record.sandbox_uid = Some(uid);
        Some(uid)
    }

    pub(crate) fn set_cgroup(&self, id: &str, cgroup: Option<JobCgroup>) {
        if let Some(slot) = self.table().by_id.get_mut(id) {
            slot.cgroup = cgroup;
        }
    }

    pub(crate) fn paths(&self, id: &str) -> JobPaths {
        self.registry.paths(id)
    }
}
