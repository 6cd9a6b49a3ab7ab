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
use std::time::Duration;

use tokio::sync::mpsc;

use super::launch;
use super::model::{EndReason, JobRecord, JobState, StopIntent, StopKind, now_ms};
use super::outcome::Outcome;
use super::procinfo;
use super::registry::JobPaths;
use super::runtime::Sandbox;
use super::store::{Command, JobStore};
use crate::host::cgroup::JobCgroup;

mod start;
mod stop;

/// How often a running job's cgroup membership is checked.
const CGROUP_CHECK: Duration = Duration::from_secs(2);

struct Supervisor {
    inner: Arc<JobStore>,
    rec: JobRecord,
    paths: JobPaths,
    /// What the job runs in.
    sandbox: Sandbox,
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
pub(crate) async fn run(
    inner: Arc<JobStore>,
    rec: JobRecord,
    rx: mpsc::UnboundedReceiver<Command>,
) {
    let paths = inner.paths(&rec.id);
    let sandbox = Sandbox::for_job(&rec.spec, &inner.cfg);
    let mut s = Supervisor {
        inner,
        rec,
        paths,
        sandbox,
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

/// Removes what an ended job leaves behind: its sandbox's leftovers (a container's runtime
/// state and bundle), its cgroups (a container's in every hierarchy), control socket and exit
/// record.
pub(crate) fn cleanup_files(inner: &JobStore, id: &str, spec: &crate::jobs::model::JobSpec) {
    let paths = inner.paths(id);
    let sandbox = Sandbox::for_job(spec, &inner.cfg);
    sandbox.cleanup(id, &paths);
    let cg = inner.cgroups.job_handle(id);
    let removed = match sandbox {
        Sandbox::Container(_) => cg.remove_everywhere(Duration::from_secs(2)),
        Sandbox::MicroVm(_) => cg.remove(Duration::from_secs(2)),
    };
    if let Err(e) = removed {
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
            self.kill().await;
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
                r = launch::exited(pidfd) => {
                    if let Err(e) = r {
                        tracing::error!(job = %self.rec.id, error = %e, "cannot wait for the VMM; polling");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if !launch::has_exited(pidfd) { continue; }
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
                    self.kill().await;
                    self.kill_at = None;
                }
            }
        }
    }

    /// A stop for a VMM that left its cgroups (or whose cgroups were removed), if it did.
    fn cgroup_lost(&self) -> Option<StopIntent> {
        let pid = self.rec.vmm.as_ref()?.pid;
        let dir = match self.cgroup.as_ref() {
            // A process that is ending has left its cgroups already: its exit is not a loss
            // (the pidfd reports it a moment later).
            Some(cg) => cg.lost(pid).filter(|_| !procinfo::is_exiting(pid))?,
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
}
