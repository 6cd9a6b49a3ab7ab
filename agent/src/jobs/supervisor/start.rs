//! Starting a job (Pending → Starting → Running) and taking one back after an agent restart.

use std::time::{Duration, Instant};

use super::{Supervisor, state_dir_full};
use crate::host::cgroup::{JobLimits, ThreadGroup};
use crate::jobs::launch::{self, LaunchSpec};
use crate::jobs::model::{EndReason, JobState, now_ms};
use crate::jobs::outcome::Outcome;
use crate::jobs::procinfo::{self, ProcessIdentity};
use crate::jobs::runtime::{Prepared, Sandbox};

/// Makes the sandbox's own directory: owned by the jail's uid (mode 0700) when there is one, so
/// a jailed VMM can write its files there and nowhere else.
fn sandbox_dir(dir: &std::path::Path, uid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if let Some(u) = uid {
        std::os::unix::fs::chown(dir, Some(u), Some(u))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl Supervisor {
    /// Pending → Starting → Running. Returns the outcome if the job ended on the way.
    pub(super) async fn start(&mut self) -> Option<Outcome> {
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
        let t_cg = Instant::now();
        let tree = self.inner.cgroups.clone();
        let id = self.rec.id.clone();
        let shape = self.sandbox.cgroup_shape();
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
            tree.create_job(&id, shape, &limits)
                .map_err(|e| e.to_string())
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

        let uid = match self.sandbox_uid() {
            Ok(u) => u,
            Err(why) => return self.fail(EndReason::VmmFailed, why),
        };
        if let Err(e) = sandbox_dir(&self.paths.sandbox, uid) {
            return self.fail(
                EndReason::VmmFailed,
                format!(
                    "cannot prepare the sandbox directory {}: {e}",
                    self.paths.sandbox.display()
                ),
            );
        }

        // What the job names is opened here, beneath the operator's roots (see
        // `Sandbox::prepare`): the sandbox never resolves a client's path with its own rights.
        let cg_took = t_cg.elapsed();
        let t_prep = Instant::now();
        let roots = self.inner.cfg.limits.paths.clone();
        let spec = self.rec.spec.clone();
        let sandbox = self.sandbox.clone();
        let (id, paths, cg) = (self.rec.id.clone(), self.paths.clone(), cgroup.clone());
        let prepared =
            tokio::task::spawn_blocking(move || sandbox.prepare(&id, &spec, &paths, &roots, &cg))
                .await;
        let prepared = match prepared {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return self.fail(EndReason::VmmFailed, e),
            Err(e) => return self.fail(EndReason::VmmFailed, e.to_string()),
        };
        let Prepared {
            program,
            mut args,
            inherit,
        } = prepared;
        if let Some(uid) = uid {
            args.extend(crate::jobs::runtime::microvm::jail_args(uid));
        }
        let prep_took = t_prep.elapsed();
        let t_launch = Instant::now();
        let output = self.paths.output.clone();
        let placement = cgroup.placement();
        let launched = tokio::task::spawn_blocking(move || {
            launch::launch(&LaunchSpec {
                program: &program,
                args: &args,
                output: &output,
                placement: &placement,
                inherit: &inherit,
            })
        })
        .await;
        let launched = match launched {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return self.fail(EndReason::VmmFailed, e.to_string()),
            Err(e) => return self.fail(EndReason::VmmFailed, e.to_string()),
        };
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        // Where a start's time goes (the rest is the sandbox's own, up to its `started` line).
        tracing::debug!(job = %self.rec.id, pid = launched.pid, method = ?launched.method,
            cgroups_ms = %ms(cg_took), prepare_ms = %ms(prep_took),
            launch_ms = %ms(t_launch.elapsed()), "sandbox process launched");
        let identity = match ProcessIdentity::of(launched.pid) {
            Ok(i) => i,
            Err(e) => {
                // Cannot identify it later: do not leave an untracked VMM running.
                let _ = launch::pidfd_signal(&launched.pidfd, libc::SIGKILL);
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

    /// The uid the job's VMM is jailed as: the one it had (a start the agent retries after a
    /// restart) or a free one of `offline.jail`; `None` without a jail or for a container.
    fn sandbox_uid(&mut self) -> Result<Option<u32>, String> {
        let Some(range) = self.inner.cfg.jail else {
            return Ok(None);
        };
        if !matches!(self.sandbox, Sandbox::MicroVm(_)) {
            return Ok(None);
        }
        if self.paths.sandbox == self.paths.dir {
            tracing::warn!(job = %self.rec.id, "a job of an earlier agent version keeps its files beside its record: its VMM runs unjailed");
            return Ok(None);
        }
        let uid = match self.rec.sandbox_uid {
            Some(u) => u,
            None => self
                .inner
                .claim_sandbox_uid(&self.rec.id, range)
                .ok_or_else(|| {
                    format!(
                        "no free uid in offline.jail (uid_base {}, uid_count {}): unfinished jobs \
                         hold all of them; raise offline.jail.uid_count",
                        range.base, range.count
                    )
                })?,
        };
        self.rec.sandbox_uid = Some(uid);
        Ok(Some(uid))
    }

    /// Waits for the VMM's `started` line, moves its threads into the job's thread cgroups and
    /// marks the job Running. Returns the outcome if it ended meanwhile.
    pub(super) async fn await_started(&mut self) -> Option<Outcome> {
        let waiting = Instant::now();
        let deadline = waiting + self.inner.cfg.start_timeout;
        let mut pause = Duration::from_millis(1);
        let mut polls = 0u32;
        let started = loop {
            let out = std::fs::read_to_string(&self.paths.output).unwrap_or_default();
            if let Some(line) = self.sandbox.started(&out) {
                break line;
            }
            if self.pidfd.as_ref().is_some_and(launch::has_exited) {
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
                self.kill().await;
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
            if !started
                .vcpu_tids
                .iter()
                .all(|t| named(t, self.sandbox.vcpu_thread_prefix()))
            {
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
                if self.pidfd.as_ref().is_some_and(launch::has_exited) {
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
        self.sandbox.attach(&self.rec.id, &self.paths);
        self.follow().await
    }

    /// Takes back a job after an agent restart.
    pub(super) async fn adopt(&mut self) -> Option<Outcome> {
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
                .find(|p| procinfo::comm(*p).is_ok_and(|c| self.sandbox.is_own_process(&c)));
            match found.map(ProcessIdentity::of) {
                Some(Ok(identity)) => {
                    tracing::info!(job = %self.rec.id, pid = identity.pid, "found the VMM in the job's cgroup");
                    self.commit(|r| r.vmm = Some(identity)).await;
                }
                _ => {
                    if let Some(o) = self
                        .sandbox
                        .recorded_outcome(&self.paths, self.rec.stop.as_ref())
                    {
                        return Some(o);
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
            launch::pidfd_open(identity.pid)
                .ok()
                .filter(|_| identity.is_alive())
        } else {
            None
        };
        let Some(pidfd) = pidfd else {
            return match self
                .sandbox
                .recorded_outcome(&self.paths, self.rec.stop.as_ref())
            {
                Some(o) => {
                    tracing::info!(job = %self.rec.id, "the sandbox ended while the agent was away");
                    Some(o)
                }
                None => self.fail(
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
        match self.sandbox.status(&self.rec.id, &self.paths).await {
            Ok(st) => {
                let state = if st.paused {
                    JobState::Paused
                } else {
                    JobState::Running
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
        self.sandbox.attach(&self.rec.id, &self.paths);
        if let Some(stop) = self.rec.stop.clone() {
            // A stop was in progress when the agent went away: carry it out.
            self.begin_stop(stop).await;
        }
        self.follow().await
    }
}
