//! The job manager: admits jobs, runs one supervisor task per live job, and answers the API
//! and the QoS loop.
//!
//! Each live job has one supervisor task (see `supervisor/`), the only writer of its record;
//! everything else sends it commands through the job table ([`super::store`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::config::{Budget, ManagerConfig};
use super::error::ManagerError;
use super::model::{JobRecord, JobSpec, JobState, StopIntent, StopKind, ThrottleState, now_ms};
use super::registry::{JobPaths, Registry, RegistryError};
use super::runtime::microvm::{self, ControlClient, ControlClientError};
use super::store::{Command, JobStore, Slot, Table};
use super::supervisor;
use crate::host::cgroup::{CgroupTree, JobCgroup};

/// A job's handle for the QoS loop and the metrics: what is needed to act on it.
#[derive(Debug, Clone)]
pub struct LiveJob {
    /// The job record (snapshot).
    pub record: JobRecord,
    /// Its cgroups (None while Pending, or if they could not be found after a restart).
    pub cgroup: Option<JobCgroup>,
    /// What the QoS loop last did to it.
    pub throttle: ThrottleState,
}

/// Budget use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUse {
    /// The budget.
    pub budget: Budget,
    /// Reserved by unfinished jobs: CPU millicores.
    pub reserved_millicores: u64,
    /// Reserved by unfinished jobs: guest memory bytes.
    pub reserved_memory_bytes: u64,
    /// Unfinished jobs.
    pub jobs: u32,
}

/// Filters of [`JobManager::list`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only these states (empty = all).
    pub states: Vec<JobState>,
    /// Only jobs carrying all these labels.
    pub labels: BTreeMap<String, String>,
}

/// The job manager. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobManager {
    inner: Arc<JobStore>,
}

impl JobManager {
    /// The sandboxes this node offers (found when the manager opened).
    pub fn sandbox_offers(&self) -> &[super::runtime::Offer] {
        &self.inner.offers
    }

    /// Loads the registry and takes every unfinished job back: Pending jobs are started,
    /// running VMMs re-adopted, VMMs that ended meanwhile settled from their exit records, and
    /// VMMs gone without a record reported as Failed/NodeLost.
    pub async fn open(
        cfg: ManagerConfig,
        cgroups: CgroupTree,
        registry: Registry,
    ) -> Result<Self, ManagerError> {
        let seed = u64::from(std::process::id()) << 20 ^ (now_ms() as u64 & 0xfffff);
        let offers = super::runtime::offers(&cfg, cgroups.version());
        for o in &offers {
            tracing::info!(sandbox = o.kind.name(), available = o.available, detail = %o.detail, "sandbox");
            metrics::gauge!("colo_sandbox_available", "kind" => o.kind.name())
                .set(if o.available { 1.0 } else { 0.0 });
        }
        let inner = Arc::new(JobStore {
            offers,
            cfg,
            cgroups,
            registry,
            table: Mutex::new(Table::default()),
            submit_lock: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(seed),
            start_latency: Mutex::new(Vec::new()),
            shutting_down: false.into(),
            supervisors: Mutex::new(tokio::task::JoinSet::new()),
        });
        let reg = inner.registry.clone();
        let (records, problems) = tokio::task::spawn_blocking(move || reg.load_all())
            .await
            .unwrap_or_default();
        for p in problems {
            tracing::error!(path = %p.path.display(), error = %p.error, "unreadable job record");
        }
        let mgr = Self { inner };
        let mut live = 0usize;
        for rec in records {
            if !rec.state.is_terminal() {
                live += 1;
            }
            mgr.insert_and_supervise(rec);
        }
        mgr.cleanup_orphans();
        tracing::info!(
            jobs = mgr.inner.table().by_id.len(),
            live,
            "registry loaded"
        );
        Ok(mgr)
    }

    /// Removes job cgroups that belong to no known job and hold no process (a crash between
    /// making the cgroup and saving the record). Ones that hold processes are reported, never
    /// killed.
    fn cleanup_orphans(&self) {
        let known: Vec<String> = self.inner.table().by_id.keys().cloned().collect();
        for id in self.inner.cgroups.job_ids() {
            if known.contains(&id) {
                continue;
            }
            let cg = self.inner.cgroups.job_handle(&id);
            let procs = cg.procs();
            if procs.is_empty() {
                match cg.remove(Duration::from_millis(200)) {
                    Ok(()) => tracing::info!(job = %id, "removed the cgroup of an unknown job"),
                    Err(e) => tracing::warn!(job = %id, error = %e, "cannot remove orphan cgroup"),
                }
            } else {
                tracing::error!(job = %id, ?procs, "cgroup of an unknown job holds processes; left alone");
            }
        }
    }

    fn insert_and_supervise(&self, rec: JobRecord) {
        let (events, _) = broadcast::channel(64);
        let terminal = rec.state.is_terminal();
        let (tx, rx) = mpsc::unbounded_channel();
        let id = rec.id.clone();
        {
            let mut t = self.inner.table();
            t.by_key
                .insert(rec.spec.idempotency_key.clone(), id.clone());
            t.by_id.insert(
                id.clone(),
                Slot {
                    record: rec.clone(),
                    events,
                    cmd: (!terminal).then_some(tx),
                    throttle: ThrottleState::default(),
                    cgroup: None,
                },
            );
        }
        if terminal {
            // Leftovers of a crash between the final save and the cleanup.
            supervisor::cleanup_files(&self.inner, &id, &rec.spec);
            return;
        }
        let inner = self.inner.clone();
        let mut set = self
            .inner
            .supervisors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.spawn(supervisor::run(inner, rec, rx));
        // Reap finished supervisor tasks so the set does not grow.
        while set.try_join_next().is_some() {}
    }

    fn new_id(&self) -> String {
        loop {
            let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed) & 0xfff;
            let id = format!("j-{:x}-{n:03x}", now_ms());
            if !self.inner.registry.exists(&id) && !self.inner.table().by_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// The budget and what unfinished jobs reserve of it.
    pub fn budget_use(&self) -> BudgetUse {
        let t = self.inner.table();
        let mut u = BudgetUse {
            budget: self.inner.cfg.budget,
            reserved_millicores: 0,
            reserved_memory_bytes: 0,
            jobs: 0,
        };
        for s in t.by_id.values().filter(|s| !s.record.state.is_terminal()) {
            u.reserved_millicores += s.record.spec.reserved_millicores();
            u.reserved_memory_bytes += s.record.spec.memory_mib << 20;
            u.jobs += 1;
        }
        u
    }

    /// Admits and starts a job. With a known idempotency key and the same spec, returns the
    /// existing job and `true` instead.
    pub async fn submit(&self, spec: JobSpec) -> Result<(JobRecord, bool), ManagerError> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(ManagerError::ShuttingDown);
        }
        if let (colo_config::job::Guest::Container(_), Err(why)) =
            (&spec.guest, &self.inner.cfg.containers)
        {
            return Err(ManagerError::SandboxUnavailable {
                sandbox: spec.guest.kind().name(),
                why: why.clone(),
            });
        }
        if let (Some(_), Err(why)) = (super::runtime::linux::program(&spec), &self.inner.cfg.linux)
        {
            return Err(ManagerError::SandboxUnavailable {
                sandbox: "linux (a program in a Linux guest)",
                why: why.clone(),
            });
        }
        let _one_at_a_time = self.inner.submit_lock.lock().await;
        {
            let t = self.inner.table();
            if let Some(id) = t.by_key.get(&spec.idempotency_key)
                && let Some(slot) = t.by_id.get(id)
            {
                if slot.record.spec == spec {
                    return Ok((slot.record.clone(), true));
                }
                return Err(ManagerError::KeyConflict {
                    key: spec.idempotency_key.clone(),
                    id: id.clone(),
                });
            }
        }
        let u = self.budget_use();
        let need_cpu = spec.reserved_millicores();
        let need_mem = spec.memory_mib << 20;
        let b = u.budget;
        if u.reserved_millicores + need_cpu > b.cpu_millicores
            || u.reserved_memory_bytes + need_mem > b.memory_bytes
        {
            return Err(ManagerError::OverBudget(format!(
                "the job does not fit the node's offline budget: it needs {need_cpu} millicores \
                 ({} vCPUs) and {} MiB; the budget is {} millicores and {} MiB, of which {} \
                 unfinished jobs reserve {} millicores and {} MiB (free: {} millicores, {} MiB); \
                 retry later or on another node",
                spec.vcpus,
                spec.memory_mib,
                b.cpu_millicores,
                b.memory_bytes >> 20,
                u.jobs,
                u.reserved_millicores,
                u.reserved_memory_bytes >> 20,
                b.cpu_millicores.saturating_sub(u.reserved_millicores),
                b.memory_bytes.saturating_sub(u.reserved_memory_bytes) >> 20,
            )));
        }
        let rec = JobRecord::new(self.new_id(), spec, now_ms());
        let reg = self.inner.registry.clone();
        let to_save = rec.clone();
        tokio::task::spawn_blocking(move || reg.save(&to_save))
            .await
            .map_err(|e| {
                ManagerError::Registry(RegistryError::Io {
                    op: "save",
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            })??;
        tracing::info!(job = %rec.id, key = %rec.spec.idempotency_key, vcpus = rec.spec.vcpus,
            memory_mib = rec.spec.memory_mib, "job admitted");
        self.insert_and_supervise(rec.clone());
        Ok((rec, false))
    }

    /// One job.
    pub fn get(&self, id: &str) -> Result<JobRecord, ManagerError> {
        self.inner
            .table()
            .by_id
            .get(id)
            .map(|s| s.record.clone())
            .ok_or_else(|| ManagerError::NotFound(id.into()))
    }

    /// Jobs matching `filter`, oldest first.
    pub fn list(&self, filter: &JobFilter) -> Vec<JobRecord> {
        let mut v: Vec<JobRecord> = self
            .inner
            .table()
            .by_id
            .values()
            .map(|s| &s.record)
            .filter(|r| filter.states.is_empty() || filter.states.contains(&r.state))
            .filter(|r| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| r.spec.labels.get(k) == Some(v))
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.created_unix_ms
                .cmp(&b.created_unix_ms)
                .then(a.id.cmp(&b.id))
        });
        v
    }

    /// The job now and every later snapshot of it.
    pub fn watch(
        &self,
        id: &str,
    ) -> Result<(JobRecord, broadcast::Receiver<JobRecord>), ManagerError> {
        let t = self.inner.table();
        let s = t
            .by_id
            .get(id)
            .ok_or_else(|| ManagerError::NotFound(id.into()))?;
        Ok((s.record.clone(), s.events.subscribe()))
    }

    fn send(&self, id: &str, cmd: Command) -> Result<(), ManagerError> {
        let t = self.inner.table();
        let s = t
            .by_id
            .get(id)
            .ok_or_else(|| ManagerError::NotFound(id.into()))?;
        match &s.cmd {
            Some(tx) if tx.send(cmd).is_ok() => Ok(()),
            _ => Err(ManagerError::ended(id, s.record.state)),
        }
    }

    /// Asks a job to stop for `kind`; returns at once with the job's current snapshot (watch
    /// it to see the end). Stopping an ended job is refused with its state.
    pub fn stop(&self, id: &str, kind: StopKind, reason: &str) -> Result<JobRecord, ManagerError> {
        self.send(
            id,
            Command::Stop(StopIntent {
                kind,
                reason: reason.to_string(),
                requested_unix_ms: now_ms(),
            }),
        )?;
        self.get(id)
    }

    /// Cancels a job (ends Cancelled).
    pub fn cancel(&self, id: &str, reason: &str) -> Result<JobRecord, ManagerError> {
        self.stop(id, StopKind::Cancel, reason)
    }

    /// Evicts a job for the QoS policy (ends Preempted/Evicted; the launcher may retry it
    /// elsewhere).
    pub fn evict(&self, id: &str, reason: &str) -> Result<JobRecord, ManagerError> {
        self.stop(id, StopKind::Evict, reason)
    }

    /// Pauses a running job's vCPUs (Running → Paused); returns once the VMM has stopped them.
    pub async fn pause(&self, id: &str, reason: &str) -> Result<(), ManagerError> {
        let (tx, rx) = oneshot::channel();
        self.send(id, Command::Pause(reason.to_string(), tx))?;
        rx.await.unwrap_or(Err(ManagerError::ShuttingDown))
    }

    /// Resumes a paused job (Paused → Running).
    pub async fn resume(&self, id: &str, reason: &str) -> Result<(), ManagerError> {
        let (tx, rx) = oneshot::channel();
        self.send(id, Command::Resume(reason.to_string(), tx))?;
        rx.await.unwrap_or(Err(ManagerError::ShuttingDown))
    }

    /// Records what the QoS loop did to a job (shown by NodeStatus / `coloctl node`).
    pub fn set_throttle(&self, id: &str, throttle: ThrottleState) -> Result<(), ManagerError> {
        let mut t = self.inner.table();
        let s = t
            .by_id
            .get_mut(id)
            .ok_or_else(|| ManagerError::NotFound(id.into()))?;
        s.throttle = throttle;
        Ok(())
    }

    /// What the QoS loop last did to a job.
    pub fn throttle(&self, id: &str) -> Option<ThrottleState> {
        self.inner.table().by_id.get(id).map(|s| s.throttle.clone())
    }

    /// Every unfinished job with its cgroups.
    pub fn live_jobs(&self) -> Vec<LiveJob> {
        self.inner
            .table()
            .by_id
            .values()
            .filter(|s| !s.record.state.is_terminal())
            .map(|s| LiveJob {
                record: s.record.clone(),
                cgroup: s.cgroup.clone(),
                throttle: s.throttle.clone(),
            })
            .collect()
    }

    /// The cgroups of a live job.
    pub fn job_cgroup(&self, id: &str) -> Option<JobCgroup> {
        self.inner
            .table()
            .by_id
            .get(id)
            .and_then(|s| s.cgroup.clone())
    }

    /// The agent's cgroup subtree.
    pub fn cgroups(&self) -> &CgroupTree {
        &self.inner.cgroups
    }

    /// The files of a job.
    pub fn paths(&self, id: &str) -> JobPaths {
        self.inner.registry.paths(id)
    }

    /// Runs one request on a live job's control socket (e.g. `set_io_limit`).
    pub async fn control<T, F>(&self, id: &str, op: F) -> Result<T, ManagerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut ControlClient) -> Result<T, ControlClientError> + Send + 'static,
    {
        let rec = self.get(id)?;
        if !matches!(rec.state, JobState::Running | JobState::Paused) {
            return Err(ManagerError::WrongState {
                id: id.into(),
                state: rec.state.name(),
                what: "its VM is not running".into(),
            });
        }
        let sock = self.inner.registry.paths(id).control;
        microvm::control(&sock, self.inner.cfg.control_timeout, op)
            .await
            .map_err(|e| ManagerError::Control {
                id: id.into(),
                error: e.to_string(),
            })
    }

    /// Number of jobs in each state.
    pub fn counts_by_state(&self) -> BTreeMap<JobState, u32> {
        let mut m: BTreeMap<JobState, u32> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for s in self.inner.table().by_id.values() {
            *m.entry(s.record.state).or_default() += 1;
        }
        m
    }

    /// Submit → Running latencies (seconds) observed since the last call.
    pub fn take_start_latencies(&self) -> Vec<f64> {
        std::mem::take(
            &mut *self
                .inner
                .start_latency
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Forgets finished jobs beyond the retention period or count (records and logs removed).
    pub async fn collect_garbage(&self) {
        let cfg = &self.inner.cfg;
        let now = now_ms();
        let retention_ms = i64::try_from(cfg.finished_retention.as_millis()).unwrap_or(i64::MAX);
        let doomed: Vec<String> = {
            let t = self.inner.table();
            let mut finished: Vec<&JobRecord> = t
                .by_id
                .values()
                .map(|s| &s.record)
                .filter(|r| r.state.is_terminal())
                .collect();
            finished.sort_by_key(|r| std::cmp::Reverse(r.ended_unix_ms));
            finished
                .iter()
                .enumerate()
                .filter(|(i, r)| *i >= cfg.max_finished || now - r.ended_unix_ms > retention_ms)
                .map(|(_, r)| r.id.clone())
                .collect()
        };
        for id in doomed {
            let reg = self.inner.registry.clone();
            let rid = id.clone();
            match tokio::task::spawn_blocking(move || reg.remove(&rid)).await {
                Ok(Ok(())) => {
                    let mut t = self.inner.table();
                    if let Some(s) = t.by_id.remove(&id) {
                        t.by_key.remove(&s.record.spec.idempotency_key);
                    }
                    tracing::debug!(job = %id, "finished job forgotten");
                }
                Ok(Err(e)) => tracing::warn!(job = %id, error = %e, "cannot forget job"),
                Err(e) => tracing::warn!(job = %id, error = %e, "cannot forget job"),
            }
        }
    }

    /// Stops accepting jobs. With drain-on-shutdown, stops every live job and waits for them
    /// (up to the stop grace plus a margin); otherwise leaves the VMs running for the next agent
    /// to re-adopt.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let live: Vec<String> = self.live_jobs().into_iter().map(|j| j.record.id).collect();
        if self.inner.cfg.drain_on_shutdown {
            tracing::info!(jobs = live.len(), "draining jobs before shutdown");
            for id in &live {
                let _ = self.stop(id, StopKind::AgentShutdown, "agent shutdown");
            }
            let mut set = std::mem::take(
                &mut *self
                    .inner
                    .supervisors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            let limit = self.inner.cfg.stop_grace + Duration::from_secs(5);
            let _ = tokio::time::timeout(limit, async { while set.join_next().await.is_some() {} })
                .await;
        } else {
            tracing::info!(jobs = live.len(), "leaving VMs running for the next agent");
            let mut set = std::mem::take(
                &mut *self
                    .inner
                    .supervisors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
        // With no job left, the unit's cgroup goes back to how systemd made it, so that a
        // restart can place the next agent there whatever systemd's version.
        match self.inner.cgroups.release_if_idle() {
            Ok(true) => tracing::info!("no job left: released the cgroup subtree's controllers"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot release the cgroup subtree"),
        }
    }

    /// True once [`shutdown`](Self::shutdown) began.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }
}
