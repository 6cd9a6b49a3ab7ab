//! One task per live job: starts or re-adopts its VMM, follows it until it ends, carries out
//! stop, pause and resume, records the outcome and cleans up. It is the only writer of the
//! job's record, so every change is persisted before anyone sees it.
//!
//! A job whose record cannot be written (a full state directory) is not left running untracked:
//! nothing is launched for it, or its VMM is killed, and it ends Failed naming the cause. If even
//! its final record cannot be written, its directory is removed, so no stale record brings it
//! back after an agent restart.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::manager::{Inner, ManagerError};
use super::model::{EndReason, JobRecord, JobState, StopIntent, StopKind, now_ms};
use super::outcome::{self, Outcome};
use super::paths::open_job_files;
use crate::host::cgroup::{JobCgroup, JobLimits, ThreadGroup};
use crate::procinfo::{self, ProcessIdentity};
use crate::registry::JobPaths;
use crate::spawn::{self, LaunchSpec, WaitStatus};
use crate::vmm::{self, ExitRecord, VmState};

/// How often a running job's cgroup membership is checked.
const CGROUP_CHECK: Duration = Duration::from_secs(2);

/// Requests to a job's supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Stop the VM for this cause.
    Stop(StopIntent),
    /// Pause its vCPUs.
    Pause(String, oneshot::Sender<Result<(), ManagerError>>),
    /// Resume its vCPUs.
    Resume(String, oneshot::Sender<Result<(), ManagerError>>),
}

struct Supervisor {
    inner: Arc<Inner>,
    rec: JobRecord,
    paths: JobPaths,
    rx: mpsc::UnboundedReceiver<Command>,
    cgroup: Option<JobCgroup>,
    pidfd: Option<OwnedFd>,
    /// When the stop grace ends and the VMM is killed.
    kill_at: Option<tokio::time::Instant>,
    /// The manager dropped our command channel (agent shutting down without drain).
    detached: bool,
    /// This supervisor launched the VMM (so its start latency is worth recording).
    launched_here: bool,
    /// When this supervisor launched the VMM (Unix ms), for a guest that ends before the agent
    /// sees it running.
    launched_unix_ms: Option<i64>,
    /// Why a change of the record could not be saved; the job ends at the next check.
    unsaved: Option<String>,
}

/// Runs a job's supervisor to the end of the job (or until the agent shuts down).
pub(crate) async fn run(inner: Arc<Inner>, rec: JobRecord, rx: mpsc::UnboundedReceiver<Command>) {
    let paths = inner.paths(&rec.id);
    let mut s = Supervisor {
        inner,
        rec,
        paths,
        rx,
        cgroup: None,
        pidfd: None,
        kill_at: None,
        detached: false,
        launched_here: false,
        launched_unix_ms: None,
        unsaved: None,
    };
    let id = s.rec.id.clone();
    let end = match s.rec.state {
        JobState::Pending => s.start().await,
        JobState::Starting | JobState::Running | JobState::Paused => s.adopt().await,
        _ => return,
    };
    if let Some(outcome) = end {
        s.finish(outcome).await;
        s.refuse_queued();
    }
    tracing::debug!(job = %id, "supervisor done");
}

/// Removes what an ended job leaves behind: its cgroups, control socket and exit record.
pub(crate) fn cleanup_files(inner: &Inner, id: &str) {
    let paths = inner.paths(id);
    let cg = inner.cgroups.job_handle(id);
    if let Err(e) = cg.remove(Duration::from_secs(2)) {
        tracing::error!(job = %id, error = %e, "cannot remove the job's cgroups");
    }
    for f in [&paths.control, &paths.exit_record] {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(job = %id, file = %f.display(), error = %e, "cannot remove"),
        }
    }
}

/// Whether the filesystem holding `dir` has no block or no inode left (as root sees it).
fn state_dir_full(dir: &std::path::Path) -> bool {
    // A filesystem without inode counts (btrfs) reports 0 of 0.
    nix::sys::statvfs::statvfs(dir).is_ok_and(|s| {
        (s.blocks() > 0 && s.blocks_free() == 0) || (s.files() > 0 && s.files_free() == 0)
    })
}

impl Supervisor {
    /// Persists a change durably, then publishes it. A registry failure is logged and ends the
    /// job at the next check (see the module docs).
    async fn commit(&mut self, change: impl FnOnce(&mut JobRecord)) {
        self.commit_with(true, change).await;
    }

    /// Persists a change an agent restart can recover without (no fsync), then publishes it.
    async fn commit_relaxed(&mut self, change: impl FnOnce(&mut JobRecord)) {
        self.commit_with(false, change).await;
    }

    async fn commit_with(&mut self, durable: bool, change: impl FnOnce(&mut JobRecord)) {
        self.save_with(durable, change).await;
        self.inner.publish(&self.rec);
    }

    /// Applies and persists a change without publishing it yet; returns whether it was saved
    /// (if not, [`Self::unsaved`] says why).
    async fn save_with(&mut self, durable: bool, change: impl FnOnce(&mut JobRecord)) -> bool {
        let before = self.rec.state;
        change(&mut self.rec);
        debug_assert!(
            before == self.rec.state || before.can_become(self.rec.state),
            "{before:?} -> {:?}",
            self.rec.state
        );
        let reg = self.inner.registry.clone();
        let rec = self.rec.clone();
        let error = match tokio::task::spawn_blocking(move || reg.save_with(&rec, durable)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if before != self.rec.state {
            tracing::info!(job = %self.rec.id, from = before.name(), to = self.rec.state.name(),
                message = %self.rec.message, "job state");
        }
        let Some(e) = error else {
            return true;
        };
        tracing::error!(job = %self.rec.id, error = %e, "cannot save the job record");
        self.unsaved.get_or_insert(e);
        false
    }

    /// The outcome of a job whose record could not be saved (its VMM, if any, killed first).
    async fn end_unsaved(&mut self) -> Option<Outcome> {
        let why = self.unsaved.take()?;
        if self.pidfd.is_some() {
            self.kill();
            let _ = self.wait_exit().await;
        }
        self.fail(
            EndReason::VmmFailed,
            format!("the agent cannot keep this job's record: {why}"),
        )
    }

    fn fail(&self, reason: EndReason, message: String) -> Option<Outcome> {
        Some(Outcome::plain(JobState::Failed, reason, message))
    }

    /// Pending → Starting → Running. Returns the outcome if the job ended on the way.
    async fn start(&mut self) -> Option<Outcome> {
        while let Ok(cmd) = self.rx.try_recv() {
            // Without a VMM yet, a stop ends the job at once; pause and resume are refused.
            if let Some(o) = self.handle(cmd).await {
                return Some(o);
            }
        }
        if self
            .inner
            .cgroups
            .open_job(&self.rec.id)
            .is_some_and(|c| !c.procs().is_empty())
        {
            // Its VMM already runs (the Starting record was lost): never start a second one.
            tracing::warn!(job = %self.rec.id, "a Pending job's cgroup holds a process; adopting it");
            self.rec.state = JobState::Starting;
            return self.adopt().await;
        }
        self.commit(|r| r.state = JobState::Starting).await;
        if self.unsaved.is_some() {
            // Nothing is launched for a job the agent could not find again after a restart.
            return self.end_unsaved().await;
        }
        let spec = &self.rec.spec;
        let limits = JobLimits {
            memory_bytes: Some((spec.memory_mib + self.inner.cfg.memory_overhead_mib) << 20),
            pids: Some(self.inner.cfg.pids_per_job),
            io: vec![],
        };
        for f in [&self.paths.control, &self.paths.exit_record] {
            let _ = std::fs::remove_file(f);
        }
        let tree = self.inner.cgroups.clone();
        let id = self.rec.id.clone();
        let made = tokio::task::spawn_blocking(move || {
            if let Some(old) = tree.open_job(&id) {
                // A cgroup from an earlier attempt that never got a VMM (crash before the
                // first save of Starting): only an empty one is reused.
                if !old.procs().is_empty() {
                    return Err(format!(
                        "its cgroup already holds processes {:?}",
                        old.procs()
                    ));
                }
                old.remove(Duration::from_millis(200))
                    .map_err(|e| e.to_string())?;
            }
            tree.create_job(&id, &limits).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let cgroup = match made {
            Ok(c) => c,
            Err(e) => {
                return self.fail(
                    EndReason::VmmFailed,
                    format!("cannot create the job's cgroups: {e}"),
                );
            }
        };
        self.cgroup = Some(cgroup.clone());
        self.inner.set_cgroup(&self.rec.id, Some(cgroup.clone()));

        // The files the job names are opened here, beneath the operator's roots, and handed
        // to the VMM as descriptors: it never resolves a client's path itself.
        let roots = self.inner.cfg.limits.paths.clone();
        let spec = self.rec.spec.clone();
        let opened = tokio::task::spawn_blocking(move || {
            open_job_files(&spec, &roots, spawn::FIRST_INHERITED_FD)
        })
        .await;
        let (launch_spec, files) = match opened {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                return self.fail(EndReason::VmmFailed, format!("cannot open its files: {e}"));
            }
            Err(e) => return self.fail(EndReason::VmmFailed, e.to_string()),
        };
        let cfg = &self.inner.cfg;
        let args = vmm::run_args(
            &launch_spec,
            &self.paths,
            &cfg.workload_guest,
            cfg.log_limit,
        );
        let program = self.inner.cfg.vmm_binary.clone();
        let output = self.paths.output.clone();
        let placement = cgroup.placement();
        let launched = tokio::task::spawn_blocking(move || {
            spawn::launch(&LaunchSpec {
                program: &program,
                args: &args,
                output: &output,
                placement: &placement,
                inherit: &files,
            })
        })
        .await;
        let launched = match launched {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return self.fail(EndReason::VmmFailed, e.to_string()),
            Err(e) => return self.fail(EndReason::VmmFailed, e.to_string()),
        };
        tracing::debug!(job = %self.rec.id, pid = launched.pid, method = ?launched.method, "VMM launched");
        let identity = match ProcessIdentity::of(launched.pid) {
            Ok(i) => i,
            Err(e) => {
                // Cannot identify it later: do not leave an untracked VMM running.
                let _ = spawn::pidfd_signal(&launched.pidfd, libc::SIGKILL);
                return self.fail(
                    EndReason::VmmFailed,
                    format!("cannot read the VMM's start time: {e}"),
                );
            }
        };
        self.pidfd = Some(launched.pidfd);
        self.launched_here = true;
        self.launched_unix_ms = Some(now_ms());
        // Not fsynced: after a crash the job's cgroup still names its VMM.
        self.commit_relaxed(|r| r.vmm = Some(identity)).await;
        self.await_started().await
    }

    /// Waits for the VMM's `started` line, moves its threads into the job's thread cgroups and
    /// marks the job Running. Returns the outcome if it ended meanwhile.
    async fn await_started(&mut self) -> Option<Outcome> {
        let waiting = Instant::now();
        let deadline = waiting + self.inner.cfg.start_timeout;
        let mut pause = Duration::from_millis(1);
        let mut polls = 0u32;
        let started = loop {
            let out = std::fs::read_to_string(&self.paths.output).unwrap_or_default();
            if let Some(line) = vmm::parse_started(&out) {
                break line;
            }
            if self.pidfd.as_ref().is_some_and(spawn::has_exited) {
                return self.ended().await;
            }
            if self.unsaved.is_some() {
                return self.end_unsaved().await;
            }
            // The `started` line goes to a file in the state directory: when that is full, the
            // line never comes, and waiting for it would only hide the cause. (A VMM starts in
            // ~10 ms; a second is a wide margin.)
            let full =
                waiting.elapsed() >= Duration::from_secs(1) && state_dir_full(&self.paths.dir);
            if full || Instant::now() >= deadline {
                self.kill();
                let _ = self.wait_exit().await;
                let why = if full {
                    format!(
                        "the state directory {} is full (No space left on device): the VMM \
                         cannot write its `started` line to {}; free space there or move \
                         offline.state_dir",
                        self.inner.registry.state_dir().display(),
                        self.paths.output.display()
                    )
                } else {
                    format!(
                        "the VMM did not report `started` within {:?}; see {}",
                        self.inner.cfg.start_timeout,
                        self.paths.output.display()
                    )
                };
                return self.fail(EndReason::VmmFailed, why);
            }
            while let Ok(cmd) = self.rx.try_recv() {
                if let Some(o) = self.handle(cmd).await {
                    return Some(o);
                }
            }
            if self.kill_at.is_some() {
                // A stop arrived: wait for the end instead of the start.
                return self.follow().await;
            }
            tokio::time::sleep(pause).await;
            polls += 1;
            // A VMM starts in ~10 ms: poll every millisecond for a while, then back off.
            if polls > 100 {
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        };
        if let Some(cg) = &self.cgroup {
            let pid = self.rec.vmm.as_ref().map_or(0, |v| v.pid);
            let names = procinfo::threads(pid).unwrap_or_default();
            let named = |tid: &u32, prefix: &str| {
                names.iter().any(|(t, n)| t == tid && n.starts_with(prefix))
            };
            if !started.vcpu_tids.iter().all(|t| named(t, "colo-vcpu-")) {
                tracing::warn!(job = %self.rec.id, tids = ?started.vcpu_tids, "vCPU threads not named colo-vcpu-N");
            }
            let cg = cg.clone();
            let placed = tokio::task::spawn_blocking(move || -> Result<(), String> {
                cg.place_threads(ThreadGroup::Vcpu, &started.vcpu_tids)
                    .map_err(|e| e.to_string())?;
                if let Some(io) = started.io_tid {
                    cg.place_threads(ThreadGroup::Io, &[io])
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(e) = placed {
                if self.pidfd.as_ref().is_some_and(spawn::has_exited) {
                    return self.ended().await;
                }
                tracing::warn!(job = %self.rec.id, error = %e, "cannot place the VMM's threads");
            }
        }
        let now = now_ms();
        if self.launched_here {
            let latency = (now - self.rec.created_unix_ms) as f64 / 1000.0;
            self.inner
                .start_latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(latency);
            metrics::histogram!("colo_vm_start_seconds").record(latency);
        }
        // Not fsynced: after a crash, a Starting job whose VMM runs is found Running again.
        self.commit_relaxed(|r| {
            r.state = JobState::Running;
            r.started_unix_ms = now;
        })
        .await;
        self.follow().await
    }

    /// Takes back a job after an agent restart.
    async fn adopt(&mut self) -> Option<Outcome> {
        self.cgroup = self.inner.cgroups.open_job(&self.rec.id);
        self.inner.set_cgroup(&self.rec.id, self.cgroup.clone());
        if self.rec.vmm.is_none() {
            // The agent stopped between starting the VMM and saving its pid: the job's cgroup
            // knows.
            let found = self
                .cgroup
                .as_ref()
                .map(|c| c.procs())
                .unwrap_or_default()
                .into_iter()
                .find(|p| procinfo::comm(*p).is_ok_and(|c| c.starts_with("colo-vmm")));
            match found.map(ProcessIdentity::of) {
                Some(Ok(identity)) => {
                    tracing::info!(job = %self.rec.id, pid = identity.pid, "found the VMM in the job's cgroup");
                    self.commit(|r| r.vmm = Some(identity)).await;
                }
                _ => {
                    if let Ok(record) = ExitRecord::read(&self.paths.exit_record) {
                        return Some(outcome::decide(Some(&record), None, self.rec.stop.as_ref()));
                    }
                    return self.fail(
                        EndReason::VmmFailed,
                        "the agent stopped while starting this job and no VMM was found; \
                         submit it again"
                            .into(),
                    );
                }
            }
        }
        let identity = self.rec.vmm.clone()?;
        let pidfd = if identity.is_alive() {
            // Open, then check again: if the pid was reused in between, the second check
            // sees the new start time.
            spawn::pidfd_open(identity.pid)
                .ok()
                .filter(|_| identity.is_alive())
        } else {
            None
        };
        let Some(pidfd) = pidfd else {
            return match ExitRecord::read(&self.paths.exit_record) {
                Ok(record) => {
                    tracing::info!(job = %self.rec.id, "the VMM ended while the agent was away");
                    Some(outcome::decide(Some(&record), None, self.rec.stop.as_ref()))
                }
                Err(_) => self.fail(
                    EndReason::NodeLost,
                    format!(
                        "VMM pid {} (start tick {}, boot {}) is gone and left no exit record \
                         (node reboot or VMM killed while the agent was away)",
                        identity.pid, identity.start_ticks, identity.boot_id
                    ),
                ),
            };
        };
        self.pidfd = Some(pidfd);
        tracing::info!(job = %self.rec.id, pid = identity.pid, "re-adopted running VMM");
        if self.rec.state == JobState::Starting {
            return self.await_started().await;
        }
        let sock = self.paths.control.clone();
        match vmm::control(&sock, self.inner.cfg.control_timeout, |c| c.stats()).await {
            Ok(st) => {
                let state = match st.state {
                    VmState::Paused => JobState::Paused,
                    VmState::Running => JobState::Running,
                };
                if state != self.rec.state || st.progress != self.rec.progress {
                    self.commit_relaxed(|r| {
                        r.state = state;
                        r.progress = st.progress;
                    })
                    .await;
                }
            }
            Err(e) => {
                tracing::warn!(job = %self.rec.id, error = %e, "re-adopted VMM does not answer on its control socket")
            }
        }
        if let Some(stop) = self.rec.stop.clone() {
            // A stop was in progress when the agent went away: carry it out.
            self.begin_stop(stop).await;
        }
        self.follow().await
    }

    /// Follows a started VMM until it ends; handles commands, the deadline and the stop grace.
    async fn follow(&mut self) -> Option<Outcome> {
        let deadline =
            (self.rec.spec.deadline_seconds > 0 && self.rec.started_unix_ms > 0).then(|| {
                let elapsed_ms = (now_ms() - self.rec.started_unix_ms).max(0) as u64;
                let total_ms = self.rec.spec.deadline_seconds * 1000;
                tokio::time::Instant::now()
                    + Duration::from_millis(total_ms.saturating_sub(elapsed_ms))
            });
        // Its cgroups are checked now and then: a VMM moved out of them, or cgroups removed
        // underneath, would run without its limits (and read zero in every metric).
        let mut cgroup_check = tokio::time::interval(CGROUP_CHECK);
        cgroup_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.unsaved.is_some() {
                return self.end_unsaved().await;
            }
            let pidfd = self.pidfd.as_ref()?;
            let deadline_armed = deadline.is_some() && self.rec.stop.is_none();
            let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
            tokio::select! {
                r = spawn::exited(pidfd) => {
                    if let Err(e) = r {
                        tracing::error!(job = %self.rec.id, error = %e, "cannot wait for the VMM; polling");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if !spawn::has_exited(pidfd) { continue; }
                    }
                    return self.ended().await;
                }
                cmd = self.rx.recv(), if !self.detached => match cmd {
                    Some(cmd) => { if let Some(o) = self.handle(cmd).await { return Some(o); } }
                    None => { self.detached = true; return None; }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline_armed => {
                    let intent = StopIntent {
                        kind: StopKind::Deadline,
                        reason: format!("deadline of {} s passed", self.rec.spec.deadline_seconds),
                        requested_unix_ms: now_ms(),
                    };
                    self.begin_stop(intent).await;
                }
                _ = cgroup_check.tick(), if self.rec.stop.is_none() => {
                    if let Some(intent) = self.cgroup_lost() {
                        tracing::error!(job = %self.rec.id, reason = %intent.reason, "the job's cgroups were changed underneath; evicting it");
                        self.begin_stop(intent).await;
                    }
                }
                _ = tokio::time::sleep_until(self.kill_at.unwrap_or(far)), if self.kill_at.is_some() => {
                    tracing::warn!(job = %self.rec.id, grace = ?self.inner.cfg.stop_grace, "VMM still running after the stop grace; killing it");
                    self.kill();
                    self.kill_at = None;
                }
            }
        }
    }

    /// A stop for a VMM that left its cgroups (or whose cgroups were removed), if it did.
    fn cgroup_lost(&self) -> Option<StopIntent> {
        let pid = self.rec.vmm.as_ref()?.pid;
        let dir = match self.cgroup.as_ref() {
            Some(cg) => cg.lost(pid)?,
            // Re-adopted, but its cgroups were gone by then.
            None => self
                .inner
                .cgroups
                .offline_dirs()
                .first()
                .map_or_else(|| self.rec.id.clone().into(), |d| d.join(&self.rec.id)),
        };
        Some(StopIntent {
            kind: StopKind::Evict,
            reason: format!(
                "its VMM (pid {pid}) is no longer in its cgroup {} (removed or moved behind the agent's back), so its limits no longer hold",
                dir.display()
            ),
            requested_unix_ms: now_ms(),
        })
    }

    async fn handle(&mut self, cmd: Command) -> Option<Outcome> {
        match cmd {
            Command::Stop(intent) => {
                if self.pidfd.is_none() {
                    let (state, reason) = intent.kind.outcome();
                    return Some(Outcome::plain(state, reason, intent.reason));
                }
                self.begin_stop(intent).await;
                None
            }
            Command::Pause(why, reply) => {
                let r = self.pause_resume(true, &why).await;
                let _ = reply.send(r);
                None
            }
            Command::Resume(why, reply) => {
                let r = self.pause_resume(false, &why).await;
                let _ = reply.send(r);
                None
            }
        }
    }

    async fn pause_resume(&mut self, pause: bool, why: &str) -> Result<(), ManagerError> {
        let (from, to) = if pause {
            (JobState::Running, JobState::Paused)
        } else {
            (JobState::Paused, JobState::Running)
        };
        if self.rec.state == to {
            return Ok(());
        }
        if self.rec.state != from || self.rec.stop.is_some() {
            return Err(ManagerError::WrongState {
                id: self.rec.id.clone(),
                state: self.rec.state.name(),
                what: format!(
                    "only a {} job can be {}",
                    from.name(),
                    if pause { "paused" } else { "resumed" }
                ),
            });
        }
        let sock = self.paths.control.clone();
        let r = vmm::control(&sock, self.inner.cfg.control_timeout, move |c| {
            if pause { c.pause() } else { c.resume() }
        })
        .await;
        match r {
            Ok(()) => {
                let why = why.to_string();
                self.commit_relaxed(|r| {
                    r.state = to;
                    r.message = why;
                })
                .await;
                Ok(())
            }
            Err(e) => Err(ManagerError::Control {
                id: self.rec.id.clone(),
                error: e.to_string(),
            }),
        }
    }

    /// Records the stop intent, asks the VMM to shut down, and arms the kill timer.
    async fn begin_stop(&mut self, intent: StopIntent) {
        if self.kill_at.is_some() {
            return;
        }
        if self.rec.stop.as_ref() != Some(&intent) {
            let i = intent.clone();
            self.commit(|r| r.stop = Some(i)).await;
        }
        tracing::info!(job = %self.rec.id, kind = ?intent.kind, reason = %intent.reason, "stopping the VM");
        let sock = self.paths.control.clone();
        if let Err(e) = vmm::control(&sock, self.inner.cfg.control_timeout, |c| c.shutdown()).await
        {
            tracing::warn!(job = %self.rec.id, error = %e, "shutdown request failed; sending SIGTERM");
            if let Some(fd) = &self.pidfd {
                let _ = spawn::pidfd_signal(fd, libc::SIGTERM);
            }
        }
        self.kill_at = Some(tokio::time::Instant::now() + self.inner.cfg.stop_grace);
    }

    fn kill(&self) {
        if let Some(fd) = &self.pidfd
            && let Err(e) = spawn::pidfd_signal(fd, libc::SIGKILL)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            tracing::error!(job = %self.rec.id, error = %e, "cannot kill the VMM");
        }
    }

    async fn wait_exit(&self) -> Option<WaitStatus> {
        let fd = self.pidfd.as_ref()?;
        let _ = tokio::time::timeout(Duration::from_secs(10), spawn::exited(fd)).await;
        spawn::reap(fd)
    }

    /// The VMM has exited: reap it if it is our child and read its exit record.
    async fn ended(&mut self) -> Option<Outcome> {
        let wait = self.wait_exit().await;
        let record = ExitRecord::read(&self.paths.exit_record).ok();
        Some(outcome::decide(
            record.as_ref(),
            wait,
            self.rec.stop.as_ref(),
        ))
    }

    /// Answers the pauses and resumes that arrived while the job was ending: it has ended. (Once
    /// the end is published, the manager sends nothing more.)
    fn refuse_queued(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            if let Command::Pause(_, reply) | Command::Resume(_, reply) = cmd {
                let _ = reply.send(Err(ManagerError::ended(&self.rec.id, self.rec.state)));
            }
        }
    }

    /// Records the outcome durably, cleans up, then publishes the outcome: whoever sees a job
    /// end (a launcher waiting on it, `coloctl wait`) finds its cgroups and files gone.
    async fn finish(&mut self, o: Outcome) {
        if self.rec.state.is_terminal() {
            return;
        }
        let cpu = match (o.cpu_seconds, &self.cgroup) {
            (Some(c), _) => c,
            (None, Some(cg)) => cg.stats().cpu_usage_ns as f64 / 1e9,
            (None, None) => self.rec.cpu_seconds,
        };
        let launched = self.launched_unix_ms;
        let saved = self
            .save_with(true, |r| {
                // A guest that ran to its own exit started, even when it ended before the agent saw
                // it running (a VM can live a few milliseconds): it started no later than its launch.
                if r.started_unix_ms == 0 && o.exit_code.is_some() {
                    r.started_unix_ms = launched.unwrap_or(r.created_unix_ms);
                }
                r.state = o.state;
                r.end_reason = Some(o.reason);
                r.exit_code = o.exit_code;
                r.message = o.message.clone();
                // The VMM's clock stamps the end; a guest that ended before the agent saw it
                // running must not appear to end before it started.
                r.ended_unix_ms = o
                    .ended_unix_ms
                    .unwrap_or_else(now_ms)
                    .max(r.started_unix_ms);
                r.cpu_seconds = cpu;
            })
            .await;
        let inner = self.inner.clone();
        let id = self.rec.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            cleanup_files(&inner, &id);
            if !saved {
                // The record on disk still says the job is live: an agent restart would start or
                // adopt it again. Better forgotten after a restart than run twice.
                match inner.registry.remove(&id) {
                    Ok(()) => tracing::error!(job = %id,
                        "the job's final record could not be saved; its directory was removed"),
                    Err(e) => tracing::error!(job = %id, error = %e,
                        "the job's final record could not be saved nor its directory removed"),
                }
            }
        })
        .await;
        self.inner.set_cgroup(&self.rec.id, None);
        self.inner.publish(&self.rec);
    }
}
