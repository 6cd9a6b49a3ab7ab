//! Tests of the cgroup layer: v1 against the real hierarchies of this machine (inside a
//! `TestCgroup`), v2's structure against the real cgroup2 mount of a hybrid host (threaded
//! children, thread moves), and v2's limit files against a fake cgroup2 directory.

use super::*;
use std::fs;
use std::process::{Child, Command};

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep")
}

fn own_cgroup_line(pid: u32, controller_prefix: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == controller_prefix))
                || (controller_prefix.is_empty() && l.starts_with("0::"))
        })
        .unwrap_or_default()
        .to_string()
}

#[test]
fn v1_job_lifecycle_on_real_hierarchies() {
    if !colo_testkit::root_or_skip("v1_job_lifecycle_on_real_hierarchies") {
        return;
    }
    if colo_testkit::cgroup_version().ok() != Some(colo_testkit::CgroupVersion::V1) {
        eprintln!("SKIPPED v1_job_lifecycle_on_real_hierarchies: this host is not cgroup v1");
        return;
    }
    let _lock = colo_testkit::host_lock();
    let test = colo_testkit::TestCgroup::new(&["pids", "cpu", "cpuacct", "blkio"], 256 << 20)
        .expect("test cgroup");
    let settings = CgroupSettings {
        root: Some(PathBuf::from(test.name())),
        ..Default::default()
    };
    let tree = CgroupTree::open(&settings).expect("open tree");
    assert_eq!(tree.version(), CgroupVersion::V1);
    let limits = JobLimits {
        memory_bytes: Some(64 << 20),
        pids: Some(32),
        io: vec![],
    };
    let job = tree
        .create_job("j1", JobShape::Vmm, &limits)
        .expect("create job");
    assert!(matches!(
        tree.create_job("j1", JobShape::Vmm, &limits),
        Err(CgroupError::JobExists(_))
    ));
    assert_eq!(tree.job_ids(), vec!["j1".to_string()]);
    let mem = test.dir("memory").join("offline/j1");
    assert_eq!(
        fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (64u64 << 20).to_string()
    );
    assert!(
        !mem.join("vcpu").exists(),
        "no thread cgroups in the memory hierarchy"
    );
    assert!(test.dir("cpu").join("offline/j1/vcpu").exists());
    assert!(test.dir("blkio").join("offline/j1/io").exists());
    match job.placement() {
        Placement::V1 { procs_files } => assert_eq!(procs_files.len(), 5),
        other => panic!("{other:?}"),
    }

    let mut child = sleeper();
    let pid = child.id();
    job.job().add_process(pid).unwrap();
    assert_eq!(job.procs(), vec![pid]);
    job.place_threads(ThreadGroup::Vcpu, &[pid]).unwrap();
    assert!(own_cgroup_line(pid, "cpu").ends_with("/offline/j1/vcpu"));
    assert!(own_cgroup_line(pid, "memory").ends_with("/offline/j1"));

    let vcpu = job.threads(ThreadGroup::Vcpu);
    vcpu.set_cpu_quota(CpuQuota::from_millicores(500, 20_000))
        .unwrap();
    assert_eq!(vcpu.cpu_quota().unwrap().millicores(), Some(500));
    vcpu.set_cpu_idle(true).unwrap();
    assert_eq!(
        fs::read_to_string(test.dir("cpu").join("offline/j1/vcpu/cpu.idle"))
            .unwrap()
            .trim(),
        "1"
    );
    // The offline group's quota may not drop below a child's on v1: the kernel says EINVAL.
    let offline = tree.offline();
    let err = offline
        .set_cpu_quota(CpuQuota::from_millicores(100, 20_000))
        .unwrap_err();
    assert!(err.to_string().contains("cpu.cfs_quota_us"), "{err}");
    offline
        .set_cpu_quota(CpuQuota::from_millicores(1000, 20_000))
        .unwrap();
    offline.set_cpu_quota(CpuQuota::unlimited(100_000)).unwrap();
    // While idle the kernel refuses weight changes (EINVAL); leave idle first.
    assert!(vcpu.set_cpu_weight(CpuWeight(1)).is_err());
    vcpu.set_cpu_idle(false).unwrap();
    vcpu.set_cpu_weight(CpuWeight(1)).unwrap();
    job.job().set_memory_high(Some(48 << 20)).unwrap();
    let dev = DeviceNumber::of_path(Path::new("/")).unwrap();
    let blk_ok = job.job().set_io_limit(&IoLimit {
        device: dev,
        read_bps: 1 << 20,
        write_bps: 0,
        read_iops: 0,
        write_iops: 0,
    });
    // The root filesystem may sit on a device without a request queue (overlay, virtiofs);
    // blkio then refuses with ENODEV, which is the kernel's answer, not the layer's.
    if let Err(e) = &blk_ok {
        assert!(e.to_string().contains("blkio.throttle"), "{e}");
    }
    let err = vcpu.set_memory_max(Some(1)).unwrap_err();
    assert!(
        matches!(err, CgroupError::ControllerUnavailable { .. }),
        "{err}"
    );
    let stats = job.stats();
    // (Memory charged before the move stays with the old cgroup on v1, so it may read 0.)
    assert!(stats.pids >= 1, "{stats:?}");

    // Busy while the process lives; removed once it is gone.
    let err = job.remove(Duration::from_millis(50)).unwrap_err();
    assert!(err.to_string().contains("still holds processes"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    job.remove(Duration::from_secs(2)).unwrap();
    assert!(tree.job_ids().is_empty());
    assert!(tree.open_job("j1").is_none());
}

/// A uniquely named directory at the root of the hybrid host's cgroup2 mount
/// (`/sys/fs/cgroup/unified`), removed on drop. It carries no controllers, so it checks the v2
/// structure (threaded children, thread moves, clone3 placement), not the limits.
pub(crate) struct UnifiedTestDir {
    pub(crate) mount: PathBuf,
    pub(crate) name: String,
}

impl UnifiedTestDir {
    pub(crate) fn new() -> Option<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let mount = PathBuf::from("/sys/fs/cgroup/unified");
        let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
        if !info
            .lines()
            .any(|l| l.contains(" /sys/fs/cgroup/unified ") && l.contains(" - cgroup2 "))
        {
            return None;
        }
        let name = format!(
            "colo-test-{}-u{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        fs::create_dir(mount.join(&name)).ok()?;
        Some(Self { mount, name })
    }

    pub(crate) fn settings(&self) -> CgroupSettings {
        CgroupSettings {
            version: CgroupVersion::V2,
            mount: self.mount.clone(),
            root: Some(PathBuf::from(&self.name)),
            move_self: Some(false),
            required_controllers: vec![],
            ..Default::default()
        }
    }
}

impl Drop for UnifiedTestDir {
    fn drop(&mut self) {
        let scope = Scope::new(vec![self.mount.join(&self.name)]);
        if let Err(e) = scope.remove_tree(&self.mount.join(&self.name), Duration::from_secs(2)) {
            eprintln!("could not remove test cgroup {}: {e}", self.name);
        }
    }
}

#[test]
fn v2_structure_on_the_real_cgroup2_mount() {
    if !colo_testkit::root_or_skip("v2_structure_on_the_real_cgroup2_mount") {
        return;
    }
    let _lock = colo_testkit::host_lock();
    let Some(dir) = UnifiedTestDir::new() else {
        eprintln!("SKIPPED v2_structure_on_the_real_cgroup2_mount: no hybrid cgroup2 mount");
        return;
    };
    let tree = CgroupTree::open(&dir.settings()).expect("open v2 tree");
    let job = tree
        .create_job("j2", JobShape::Vmm, &JobLimits::default())
        .expect("create");
    let jobdir = dir.mount.join(&dir.name).join("offline/j2");
    assert_eq!(
        fs::read_to_string(jobdir.join("vcpu/cgroup.type"))
            .unwrap()
            .trim(),
        "threaded"
    );
    assert_eq!(
        fs::read_to_string(jobdir.join("io/cgroup.type"))
            .unwrap()
            .trim(),
        "threaded"
    );
    assert_eq!(
        fs::read_to_string(jobdir.join("cgroup.type"))
            .unwrap()
            .trim(),
        "domain threaded"
    );
    assert_eq!(
        job.placement(),
        Placement::V2 {
            dir: jobdir.clone()
        }
    );

    let mut child = sleeper();
    let pid = child.id();
    job.job().add_process(pid).unwrap();
    job.place_threads(ThreadGroup::Io, &[pid]).unwrap();
    assert!(
        own_cgroup_line(pid, "").ends_with("/offline/j2/io"),
        "{}",
        own_cgroup_line(pid, "")
    );
    assert_eq!(job.threads(ThreadGroup::Io).thread_ids(), vec![pid]);
    assert_eq!(job.procs(), vec![pid]);
    // No memory controller on this mount: a clear error naming it.
    let err = job.job().set_memory_max(Some(1 << 20)).unwrap_err();
    assert!(
        err.to_string().contains("`memory` is not available"),
        "{err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    job.remove(Duration::from_secs(2)).unwrap();
    assert!(!jobdir.exists());
}

/// Lays out a fake cgroup2 tree in a temporary directory: the interface files the kernel
/// would create, empty, so that the layer's writes can be read back.
fn fake_cgroup2(base: &Path, dirs: &[(&str, &str, &[&str])]) {
    for (rel, controllers, files_) in dirs {
        let d = base.join(rel);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cgroup.controllers"), controllers).unwrap();
        for f in [
            "cgroup.subtree_control",
            "cgroup.procs",
            "cgroup.threads",
            "cgroup.type",
        ]
        .iter()
        .chain(files_.iter())
        {
            if !d.join(f).exists() {
                fs::write(d.join(f), "").unwrap();
            }
        }
    }
}

#[test]
fn v2_limit_files_against_a_fake_cgroup2_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("fake-cgroup2");
    let all = "cpuset cpu io memory pids";
    let job_files: &[&str] = &[
        "memory.max",
        "memory.high",
        "pids.max",
        "io.max",
        "cpu.max",
        "cpu.stat",
        "memory.current",
        "io.stat",
        "pids.current",
    ];
    let thread_files: &[&str] = &["cpu.max", "cpu.idle", "cpu.weight", "cpu.stat"];
    fake_cgroup2(
        &mount,
        &[
            ("svc", all, &[]),
            ("svc/agent", all, &[]),
            ("svc/offline", all, &["cpu.max", "io.max"]),
            ("svc/offline/j3", all, job_files),
            ("svc/offline/j3/vcpu", "cpuset cpu", thread_files),
            ("svc/offline/j3/io", "cpuset cpu", thread_files),
        ],
    );
    let settings = CgroupSettings {
        version: CgroupVersion::V2,
        mount: mount.clone(),
        root: Some(PathBuf::from("svc")),
        // On a fake tree "moving" is a write of "0" into svc/agent/cgroup.procs.
        move_self: Some(true),
        ..Default::default()
    };
    let tree = CgroupTree::open(&settings).unwrap();
    let read = |rel: &str| fs::read_to_string(mount.join("svc").join(rel)).unwrap();
    assert_eq!(
        read("agent/cgroup.procs"),
        "0",
        "the agent moves itself into <root>/agent"
    );
    assert_eq!(
        read("cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +pids"
    );
    assert_eq!(
        read("offline/cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +pids"
    );

    // The fake already holds j3 (a real kernel would create the files on mkdir), so open it
    // through the same path create_job takes after mkdir.
    let job = tree.job_handle("j3");
    job.create(&JobLimits {
        memory_bytes: Some(300 << 20),
        pids: Some(64),
        io: vec![IoLimit {
            device: DeviceNumber {
                major: 8,
                minor: 16,
            },
            read_bps: 0,
            write_bps: 10 << 20,
            read_iops: 0,
            write_iops: 0,
        }],
    })
    .unwrap();
    assert_eq!(read("offline/j3/memory.max"), (300u64 << 20).to_string());
    assert_eq!(read("offline/j3/pids.max"), "64");
    assert_eq!(
        read("offline/j3/io.max"),
        "8:16 rbps=max wbps=10485760 riops=max wiops=max"
    );
    assert_eq!(read("offline/j3/vcpu/cgroup.type"), "threaded");
    assert_eq!(read("offline/j3/io/cgroup.type"), "threaded");
    assert_eq!(read("offline/j3/cgroup.subtree_control"), "+cpuset +cpu");

    let vcpu = job.threads(ThreadGroup::Vcpu);
    vcpu.set_cpu_quota(CpuQuota::from_millicores(250, 10_000))
        .unwrap();
    assert_eq!(read("offline/j3/vcpu/cpu.max"), "2500 10000");
    assert_eq!(vcpu.cpu_quota().unwrap().millicores(), Some(250));
    vcpu.set_cpu_idle(true).unwrap();
    assert_eq!(read("offline/j3/vcpu/cpu.idle"), "1");
    vcpu.set_cpu_weight(CpuWeight(5)).unwrap();
    assert_eq!(read("offline/j3/vcpu/cpu.weight"), "5");
    job.place_threads(ThreadGroup::Vcpu, &[4242]).unwrap();
    assert_eq!(read("offline/j3/vcpu/cgroup.threads"), "4242");
    job.job().set_memory_high(None).unwrap();
    assert_eq!(read("offline/j3/memory.high"), "max");
    let err = vcpu.set_pids_max(Some(3)).unwrap_err();
    assert!(
        matches!(err, CgroupError::ControllerUnavailable { .. }),
        "{err}"
    );
    tree.offline()
        .set_cpu_quota(CpuQuota::unlimited(20_000))
        .unwrap();
    assert_eq!(read("offline/cpu.max"), "max 20000");

    fs::write(
        mount.join("svc/offline/j3/cpu.stat"),
        "usage_usec 2000\nthrottled_usec 10\nnr_throttled 1\n",
    )
    .unwrap();
    fs::write(
        mount.join("svc/offline/j3/vcpu/cpu.stat"),
        "usage_usec 1500\nthrottled_usec 30\nnr_throttled 2\n",
    )
    .unwrap();
    fs::write(mount.join("svc/offline/j3/memory.current"), "123456\n").unwrap();
    fs::write(
        mount.join("svc/offline/j3/io.stat"),
        "8:16 rbytes=10 wbytes=20 rios=1 wios=1\n",
    )
    .unwrap();
    let s = job.stats();
    assert_eq!(s.cpu_usage_ns, 2_000_000);
    assert_eq!(s.cpu_throttled_ns, 40_000);
    assert_eq!(s.cpu_nr_throttled, 3);
    assert_eq!(s.memory_bytes, 123_456);
    assert_eq!((s.io_read_bytes, s.io_write_bytes), (10, 20));
    assert_eq!(
        job.placement(),
        Placement::V2 {
            dir: mount.join("svc/offline/j3")
        }
    );
}

#[test]
fn v2_refuses_a_missing_required_controller_and_the_hierarchy_root() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("fake-cgroup2");
    fake_cgroup2(&mount, &[("svc", "cpu pids", &[])]);
    let mut settings = CgroupSettings {
        version: CgroupVersion::V2,
        mount: mount.clone(),
        root: Some(PathBuf::from("svc")),
        move_self: Some(false),
        ..Default::default()
    };
    let err = CgroupTree::open(&settings).unwrap_err();
    assert!(
        err.to_string().contains("`memory` is not available"),
        "{err}"
    );
    assert!(err.to_string().contains("Delegate=yes"), "{err}");
    settings.root = Some(PathBuf::from("/"));
    assert!(matches!(
        CgroupTree::open(&settings),
        Err(CgroupError::RootOfHierarchy)
    ));
}
