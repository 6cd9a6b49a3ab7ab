//! The job manager's internal API, as the QoS loop uses it: in process, with real cgroups and
//! real VMs. Pause/resume through the control socket, a vCPU quota and `cpu.idle` on the
//! job's `vcpu` cgroup, throttle state for NodeStatus, eviction.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use colo_agent::host::cgroup::{CgroupSettings, CgroupTree, CpuQuota, ThreadGroup};
use colo_agent::jobs::model::{Guest, JobSpec, QosClass, WorkloadGuest};
use colo_agent::jobs::registry::Registry;
use colo_agent::jobs::{Budget, EndReason, JobManager, JobState, ManagerConfig, ThrottleState};

async fn wait_state(m: &JobManager, id: &str, want: JobState) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.get(id).unwrap().state != want {
        assert!(
            Instant::now() < deadline,
            "{id} stuck in {:?}",
            m.get(id).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_qos_loop_can_throttle_pause_and_evict_a_job() {
    let test = "the_qos_loop_can_throttle_pause_and_evict_a_job";
    let Some(_lock) = common::vm_guard(test) else {
        return;
    };
    let vmm = common::vmm_binary().expect("checked by vm_guard");
    let cg = colo_testkit::TestCgroup::new(&["pids", "cpu", "cpuacct", "blkio"], 4 << 30).unwrap();
    let state = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tree = CgroupTree::open(&CgroupSettings {
            root: Some(PathBuf::from(cg.name())),
            ..Default::default()
        })
        .unwrap();
        let guest = colo_vmm::workload_guest_path().unwrap();
        let cfg = ManagerConfig::new(
            vmm,
            guest,
            Budget {
                cpu_millicores: 8000,
                memory_bytes: 1 << 30,
            },
        );
        let m = JobManager::open(cfg, tree, Registry::open(state.path()).unwrap())
            .await
            .unwrap();
        let spec = JobSpec {
            idempotency_key: "hog".into(),
            name: "hog".into(),
            guest: Guest::Workload(WorkloadGuest {
                cpu_forever: true,
                ..Default::default()
            }),
            vcpus: 1,
            memory_mib: 16,
            disks: vec![],
            qos_class: QosClass::Batch,
            priority: 0,
            labels: Default::default(),
            deadline_seconds: 0,
        };
        let (rec, existing) = m.submit(spec).await.unwrap();
        assert!(!existing);
        let id = rec.id;
        wait_state(&m, &id, JobState::Running).await;

        // The job's cgroups: squeeze its vCPUs to 20 % of a core under cpu.idle.
        let job = m.job_cgroup(&id).expect("a running job has cgroups");
        let vcpu = job.threads(ThreadGroup::Vcpu);
        vcpu.set_cpu_quota(CpuQuota::from_millicores(200, 10_000))
            .unwrap();
        vcpu.set_cpu_idle(true).unwrap();
        assert_eq!(vcpu.cpu_quota().unwrap().millicores(), Some(200));
        let quota_file = cg
            .dir("cpu")
            .join(format!("offline/{id}/vcpu/cpu.cfs_quota_us"));
        assert_eq!(std::fs::read_to_string(quota_file).unwrap().trim(), "2000");
        let before = job.stats();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let after = job.stats();
        let used = (after.cpu_usage_ns - before.cpu_usage_ns) as f64 / 1e9;
        assert!(
            used < 0.5,
            "a 200m quota let the hog use {used} s of CPU in 1 s"
        );
        assert!(
            after.cpu_throttled_ns > before.cpu_throttled_ns,
            "{after:?}"
        );
        m.set_throttle(
            &id,
            ThrottleState {
                vcpu_quota_millicores: 200,
                sched_idle: true,
                reason: "cpu_suppress: test".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(m.live_jobs()[0].throttle.vcpu_quota_millicores, 200);

        // Pause stops the guest's progress; resume lets it go on.
        m.pause(&id, "test pause").await.unwrap();
        assert_eq!(m.get(&id).unwrap().state, JobState::Paused);
        let p1 = m.control(&id, |c| c.stats()).await.unwrap().progress;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let p2 = m.control(&id, |c| c.stats()).await.unwrap().progress;
        assert_eq!(p1, p2, "progress while paused");
        assert!(
            m.pause(&id, "again").await.is_ok(),
            "pausing a paused job is a no-op"
        );
        m.resume(&id, "test resume").await.unwrap();
        assert_eq!(m.get(&id).unwrap().state, JobState::Running);
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.control(&id, |c| c.stats()).await.unwrap().progress == p2 {
            assert!(Instant::now() < deadline, "no progress after resume");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Evict: the launcher sees Preempted/Evicted with the reason.
        m.evict(&id, "memory pressure").unwrap();
        wait_state(&m, &id, JobState::Preempted).await;
        let r = m.get(&id).unwrap();
        assert_eq!(r.end_reason, Some(EndReason::Evicted));
        assert!(r.message.contains("memory pressure"), "{}", r.message);
        assert!(m.job_cgroup(&id).is_none());
        assert!(m.cgroups().job_ids().is_empty(), "job cgroups removed");
        assert!(m.pause(&id, "too late").await.is_err());
        m.shutdown().await;
    });
}
