//! Pausing, resuming and stopping a job, and recording how it ended.

use std::time::Duration;

use super::{Supervisor, cleanup_files};
use crate::jobs::error::ManagerError;
use crate::jobs::launch::{self, WaitStatus};
use crate::jobs::model::{JobState, StopIntent, now_ms};
use crate::jobs::outcome::Outcome;
use crate::jobs::store::Command;

impl Supervisor {
    pub(super) async fn pause_resume(
        &mut self,
        pause: bool,
        why: &str,
    ) -> Result<(), ManagerError> {
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
        match self
            .sandbox
            .set_paused(&self.rec.id, &self.paths, pause)
            .await
        {
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
    pub(super) async fn begin_stop(&mut self, intent: StopIntent) {
        if self.kill_at.is_some() {
            return;
        }
        if self.rec.stop.as_ref() != Some(&intent) {
            let i = intent.clone();
            self.commit(|r| r.stop = Some(i)).await;
        }
        tracing::info!(job = %self.rec.id, kind = ?intent.kind, reason = %intent.reason, "stopping the VM");
        if let Err(e) = self.sandbox.shutdown(&self.rec.id, &self.paths).await {
            tracing::warn!(job = %self.rec.id, error = %e, "shutdown request failed; sending SIGTERM");
            if let Some(fd) = &self.pidfd {
                let _ = launch::pidfd_signal(fd, libc::SIGTERM);
            }
        }
        self.kill_at = Some(tokio::time::Instant::now() + self.inner.cfg.stop_grace);
    }

    pub(super) async fn kill(&self) {
        self.sandbox
            .kill(&self.rec.id, &self.paths, self.pidfd.as_ref())
            .await;
    }

    pub(super) async fn wait_exit(&self) -> Option<WaitStatus> {
        let fd = self.pidfd.as_ref()?;
        let _ = tokio::time::timeout(Duration::from_secs(10), launch::exited(fd)).await;
        launch::reap(fd)
    }

    /// The VMM has exited: reap it if it is our child and read its exit record.
    pub(super) async fn ended(&mut self) -> Option<Outcome> {
        let wait = self.wait_exit().await;
        Some(
            self.sandbox
                .decide(&self.paths, wait, self.rec.stop.as_ref()),
        )
    }

    /// Answers the pauses and resumes that arrived while the job was ending: it has ended. (Once
    /// the end is published, the manager sends nothing more.)
    pub(super) fn refuse_queued(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            if let Command::Pause(_, reply) | Command::Resume(_, reply) = cmd {
                let _ = reply.send(Err(ManagerError::ended(&self.rec.id, self.rec.state)));
            }
        }
    }

    /// Records the outcome durably, cleans up, then publishes the outcome: whoever sees a job
    /// end (a launcher waiting on it, `coloctl watch`) finds its cgroups and files gone.
    pub(super) async fn finish(&mut self, o: Outcome) {
        self.sandbox.detach();
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
        let spec = self.rec.spec.clone();
        let _ = tokio::task::spawn_blocking(move || {
            cleanup_files(&inner, &id, &spec);
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
