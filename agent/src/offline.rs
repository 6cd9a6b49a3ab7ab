//! The wiring between the job side and the QoS loop: the job manager is the loop's offline
//! side ([`qos::OfflineJobs`]), so neither subsystem imports the other.

use std::time::Duration;

use colo_config::job::{Guest, ThrottleState};

use crate::host::cgroup::CgroupTree;
use crate::jobs::JobManager;
use crate::jobs::model::{JobState, now_ms};
use crate::qos::{self, OfflineJob, OpFuture};

impl qos::OfflineJobs for JobManager {
    fn cgroups(&self) -> &CgroupTree {
        JobManager::cgroups(self)
    }

    fn live(&self) -> Vec<OfflineJob> {
        let now = now_ms();
        self.live_jobs()
            .into_iter()
            .filter_map(|j| {
                let paused = match j.record.state {
                    JobState::Running => false,
                    JobState::Paused => true,
                    _ => return None,
                };
                let cgroup = j.cgroup?;
                let r = j.record;
                let since = r.started_unix_ms.max(r.created_unix_ms);
                let age_ms = u64::try_from(now.saturating_sub(since)).unwrap_or(0);
                Some(OfflineJob {
                    paused,
                    cgroup,
                    class: r.spec.qos_class,
                    priority: r.spec.priority,
                    vcpus: r.spec.vcpus,
                    memory_mib: r.spec.memory_mib,
                    disks: r.spec.disks.len(),
                    container: matches!(r.spec.guest, Guest::Container(_)),
                    age: Duration::from_millis(age_ms),
                    id: r.id,
                })
            })
            .collect()
    }

    fn pause<'a>(&'a self, job: &'a str, reason: &'a str) -> OpFuture<'a> {
        Box::pin(async move {
            JobManager::pause(self, job, reason)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn resume<'a>(&'a self, job: &'a str, reason: &'a str) -> OpFuture<'a> {
        Box::pin(async move {
            JobManager::resume(self, job, reason)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn set_disk_limits<'a>(
        &'a self,
        job: &'a str,
        disks: usize,
        bw: u64,
        iops: u64,
    ) -> OpFuture<'a> {
        Box::pin(async move {
            let mut r = Ok(());
            for d in 0..disks {
                let disk = d.to_string();
                if let Err(e) = self
                    .control(job, move |c| c.set_io_limit(&disk, bw, iops))
                    .await
                {
                    r = Err(e.to_string());
                }
            }
            r
        })
    }

    fn evict(&self, job: &str, reason: &str) -> Result<(), String> {
        JobManager::evict(self, job, reason)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn set_throttle(&self, job: &str, throttle: ThrottleState) {
        // A job that ended meanwhile has no throttle to show.
        let _ = JobManager::set_throttle(self, job, throttle);
    }

    fn jobs_by_state(&self) -> Vec<(String, u32)> {
        self.counts_by_state()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (s.name().to_string(), n))
            .collect()
    }

    fn sandboxes(&self) -> Vec<String> {
        self.sandbox_offers()
            .iter()
            .filter(|o| o.available)
            .map(|o| o.kind.name().to_string())
            .collect()
    }
}
