//! The cgroup layer on a real cgroup v2 host (`/sys/fs/cgroup` a cgroup2 mount with the
//! controllers delegated, as in the TCG test host of `scripts/tcg-host.sh`): every limit the
//! agent writes is read back from the kernel, and the kernel's own rules (threaded subtrees,
//! idle groups refusing weights, a busy cgroup refusing removal) are checked where they bite.
//! Skipped, saying so, on a v1 or hybrid host.

use super::*;
use std::fs;
use std::process::Command;

/// The line of `/proc/<pid>/cgroup` for the unified hierarchy (`0::/path`).
fn unified_line(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_default()
        .to_string()
}

/// A test cgroup on a real v2 host, or `None` (with a loud skip) elsewhere.
fn v2_host(test: &str) -> Option<(colo_testkit::HostLock, colo_testkit::TestCgroup)> {
    if !colo_testkit::root_or_skip(test) {
        return None;
    }
    if colo_testkit::cgroup_version().ok() != Some(colo_testkit::CgroupVersion::V2) {
        eprintln!(
            "\n*** SKIPPED {test}: this host is not cgroup v2 (scripts/tcg-v2-suite.sh runs it on one) ***\n"
        );
        return None;
    }
    let lock = colo_testkit::host_lock();
    let cg = colo_testkit::TestCgroup::new(&["cpu", "io", "pids", "cpuset"], 512 << 20)
        .expect("test cgroup");
    Some((lock, cg))
}

/// The agent's tree in the test cgroup; the test process stays where it is (the agent moves
/// itself on a real node).
fn settings(cg: &colo_testkit::TestCgroup) -> CgroupSettings {
    CgroupSettings {
        root: Some(PathBuf::from(cg.name())),
        move_self: Some(false),
        ..Default::default()
    }
}

fn open_tree(settings: &CgroupSettings) -> CgroupTree {
    CgroupTree::open(settings).expect("open the tree on real v2")
}

/// A cgroup file beneath `base`, trimmed.
fn read_trimmed(base: &Path, rel: &str) -> String {
    fs::read_to_string(base.join(rel))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn v2_job_lifecycle_limits_read_back_from_the_kernel() {
    let test = "v2_job_lifecycle_limits_read_back_from_the_kernel";
    let Some((_lock, cg)) = v2_host(test) else {
        return;
    };
    let settings = settings(&cg);
    let tree = open_tree(&settings);
    assert_eq!(tree.version(), CgroupVersion::V2);
    let base = cg.dir("memory");
    let read = |rel: &str| read_trimmed(&base, rel);
    for c in ["cpu", "io", "memory", "pids"] {
        assert!(
            read("offline/cgroup.subtree_control")
                .split_whitespace()
                .any(|x| x == c),
            "{c} not enabled for the jobs: {}",
            read("offline/cgroup.subtree_control")
        );
    }

    // io.max needs a real block device: the TCG host's scratch disk is mounted at /var/tmp.
    let dev = DeviceNumber::of_path(Path::new("/var/tmp")).unwrap();
    let io = if dev.major == 0 {
        eprintln!("{test}: /var/tmp is not on a block device; io.max is not checked");
        vec![]
    } else {
        vec![IoLimit {
            device: dev,
            read_bps: 1 << 20,
            write_bps: 0,
            read_iops: 0,
            write_iops: 500,
        }]
    };
    let limits = JobLimits {
        memory_bytes: Some(64 << 20),
        pids: Some(32),
        io: io.clone(),
    };
    let job = tree
        .create_job("j1", JobShape::Vmm, &limits)
        .expect("create job");
    assert_eq!(read("offline/j1/memory.max"), (64u64 << 20).to_string());
    assert_eq!(read("offline/j1/pids.max"), "32");
    if !io.is_empty() {
        assert_eq!(
            read("offline/j1/io.max"),
            format!("{dev} rbps=1048576 wbps=max riops=max wiops=500")
        );
    }
    assert_eq!(read("offline/j1/cgroup.type"), "domain threaded");
    assert_eq!(read("offline/j1/vcpu/cgroup.type"), "threaded");
    assert_eq!(read("offline/j1/io/cgroup.type"), "threaded");

    let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = child.id();
    job.job().add_process(pid).unwrap();
    job.place_threads(ThreadGroup::Vcpu, &[pid]).unwrap();
    assert!(
        unified_line(pid).ends_with("/offline/j1/vcpu"),
        "{}",
        unified_line(pid)
    );
    assert_eq!(job.procs(), vec![pid]);

    let vcpu = job.threads(ThreadGroup::Vcpu);
    vcpu.set_cpu_quota(CpuQuota::from_millicores(500, 20_000))
        .unwrap();
    assert_eq!(read("offline/j1/vcpu/cpu.max"), "10000 20000");
    assert_eq!(vcpu.cpu_quota().unwrap().millicores(), Some(500));
    // v2, unlike v1, lets a parent's quota drop below a child's (the child is then bounded).
    let offline = tree.offline();
    offline
        .set_cpu_quota(CpuQuota::from_millicores(100, 20_000))
        .unwrap();
    assert_eq!(read("offline/cpu.max"), "2000 20000");
    offline.set_cpu_quota(CpuQuota::unlimited(100_000)).unwrap();
    assert_eq!(read("offline/cpu.max"), "max 100000");
    vcpu.set_cpu_idle(true).unwrap();
    assert_eq!(read("offline/j1/vcpu/cpu.idle"), "1");
    // While idle the kernel refuses weight changes (EINVAL); leave idle first.
    assert!(vcpu.set_cpu_weight(CpuWeight(1)).is_err());
    vcpu.set_cpu_idle(false).unwrap();
    vcpu.set_cpu_weight(CpuWeight(1)).unwrap();
    assert_eq!(read("offline/j1/vcpu/cpu.weight"), "1");
    job.job().set_memory_high(Some(48 << 20)).unwrap();
    assert_eq!(read("offline/j1/memory.high"), (48u64 << 20).to_string());
    job.job().set_memory_high(None).unwrap();
    assert_eq!(read("offline/j1/memory.high"), "max");
    // Memory is not a threaded controller: a clear error, not a write into the void.
    let err = vcpu.set_memory_max(Some(1 << 20)).unwrap_err();
    assert!(
        matches!(err, CgroupError::ControllerUnavailable { .. }),
        "{err}"
    );
    assert!(job.stats().pids >= 1, "{:?}", job.stats());

    let err = job.remove(Duration::from_millis(50)).unwrap_err();
    assert!(err.to_string().contains("still holds processes"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    job.remove(Duration::from_secs(2)).unwrap();
    assert!(tree.job_ids().is_empty());
    assert!(!base.join("offline/j1").exists());
}

#[test]
fn v2_container_job_has_domain_children_and_its_monitor_beside_the_container() {
    let test = "v2_container_job_has_domain_children_and_its_monitor_beside_the_container";
    let Some((_lock, cg)) = v2_host(test) else {
        return;
    };
    let settings = settings(&cg);
    let tree = open_tree(&settings);
    let base = cg.dir("memory");
    let read = |rel: &str| read_trimmed(&base, rel);
    let limits = JobLimits {
        memory_bytes: Some(64 << 20),
        pids: Some(32),
        io: vec![],
    };
    let job = tree
        .create_job("c1", JobShape::Container, &limits)
        .expect("create job");
    // An OCI runtime moves whole processes: every child is a domain cgroup, and the job
    // enables the domain controllers for them.
    for child in ["vcpu", "io", "monitor"] {
        assert_eq!(read(&format!("offline/c1/{child}/cgroup.type")), "domain");
    }
    let enabled = read("offline/c1/cgroup.subtree_control");
    for c in ["cpu", "io", "memory", "pids"] {
        assert!(enabled.split_whitespace().any(|x| x == c), "{c}: {enabled}");
    }
    assert_eq!(read("offline/c1/memory.max"), (64u64 << 20).to_string());
    let Placement::V2 { dir } = job.placement() else {
        panic!("v2 placement expected");
    };
    assert!(dir.ends_with("offline/c1/monitor"), "{}", dir.display());

    // The monitor in its cgroup, the container's process in `vcpu`.
    let mut monitor = Command::new("sleep").arg("30").spawn().expect("sleep");
    let mut container = Command::new("sleep").arg("30").spawn().expect("sleep");
    let (m, c) = (monitor.id(), container.id());
    job.home().add_process(m).unwrap();
    job.threads(ThreadGroup::Vcpu).add_process(c).unwrap();
    assert!(
        unified_line(m).ends_with("/offline/c1/monitor"),
        "{}",
        unified_line(m)
    );
    assert!(
        unified_line(c).ends_with("/offline/c1/vcpu"),
        "{}",
        unified_line(c)
    );
    let mut procs = job.procs();
    procs.sort();
    let mut want = vec![m, c];
    want.sort();
    assert_eq!(procs, want);
    assert_eq!(job.lost(m), None);
    // Reopened after an agent restart, the handle finds the same shape.
    let again = tree.open_job("c1").expect("reopen");
    assert_eq!(again.placement(), job.placement());

    let vcpu = job.threads(ThreadGroup::Vcpu);
    vcpu.set_cpu_quota(CpuQuota::from_millicores(250, 100_000))
        .unwrap();
    assert_eq!(read("offline/c1/vcpu/cpu.max"), "25000 100000");
    vcpu.set_cpu_idle(true).unwrap();
    assert_eq!(read("offline/c1/vcpu/cpu.idle"), "1");
    assert!(job.stats().pids >= 2, "{:?}", job.stats());

    // A process that is not the monitor is not where the monitor lives.
    assert!(job.lost(c).is_some());
    for child in [&mut monitor, &mut container] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    job.remove(Duration::from_secs(2)).unwrap();
    assert!(tree.job_ids().is_empty());
}

#[test]
fn v2_an_idle_subtree_hands_its_controllers_back() {
    let test = "v2_an_idle_subtree_hands_its_controllers_back";
    let Some((_lock, cg)) = v2_host(test) else {
        return;
    };
    let settings = settings(&cg);
    let tree = open_tree(&settings);
    let base = cg.dir("memory");
    let job = tree
        .create_job("j1", JobShape::Container, &JobLimits::default())
        .expect("create job");
    // A job's cgroup holds the subtree.
    assert!(!tree.release_if_idle().unwrap());
    assert!(base.join("offline/j1").exists());
    job.remove(Duration::from_secs(2)).unwrap();
    assert!(tree.release_if_idle().unwrap());
    assert!(!base.join("offline").exists());
    let enabled = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap();
    assert_eq!(enabled.trim(), "", "controllers left enabled: {enabled}");
    // A process may live in the root again (what systemd needs to start the next agent).
    let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
    fs::write(base.join("cgroup.procs"), child.id().to_string()).expect("a process in the root");
    child.kill().unwrap();
    child.wait().unwrap();
    // The next agent's tree enables them again.
    let again = CgroupTree::open(&settings).expect("reopen");
    assert!(base.join("offline").exists());
    drop(again);
}
