//! Tests of process placement: v1 through `pre_exec` on the real hierarchies, v2 through
//! `clone3(CLONE_INTO_CGROUP)` on the real cgroup2 mount of a hybrid host.

use super::*;
use crate::host::cgroup::tests::UnifiedTestDir;
use crate::host::cgroup::{CgroupSettings, CgroupTree, JobLimits, JobShape};
use std::time::{Duration, Instant};

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn cgroup_lines(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
}

fn wait_exit(pidfd: &OwnedFd) -> WaitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = reap(pidfd) {
            return s;
        }
        assert!(Instant::now() < deadline, "child did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn check_launch(tree: &CgroupTree, expect: PlacementMethod, needle: &str) {
    let job = tree
        .create_job("s1", JobShape::Vmm, &JobLimits::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let a = args(&["-c", "echo started; exec sleep 30"]);
    let l = launch(&LaunchSpec {
        program: Path::new("/bin/sh"),
        args: &a,
        output: &out,
        placement: &job.placement(),
        inherit: &[],
    })
    .expect("launch");
    assert_eq!(l.method, expect);
    let lines = cgroup_lines(l.pid);
    assert!(
        lines.lines().filter(|x| x.ends_with(needle)).count() >= 1,
        "{lines}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&out).unwrap().contains("started") {
        assert!(Instant::now() < deadline, "no output from the child");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Its own session.
    // SAFETY: getsid on a pid we started.
    assert_eq!(unsafe { libc::getsid(l.pid as i32) }, l.pid as i32);
    assert!(!has_exited(&l.pidfd));
    assert_eq!(reap(&l.pidfd), None);
    pidfd_signal(&l.pidfd, libc::SIGKILL).unwrap();
    assert_eq!(wait_exit(&l.pidfd), WaitStatus::Signaled(libc::SIGKILL));

    // Inherited descriptors arrive as 3, 4, ... in order, and nothing else is inherited there.
    let files: Vec<std::os::fd::OwnedFd> = ["first", "second"]
        .iter()
        .map(|t| {
            let p = dir.path().join(t);
            std::fs::write(&p, t).unwrap();
            std::fs::File::open(&p).unwrap().into()
        })
        .collect();
    let inherited = dir.path().join("inherited.log");
    let a = args(&[
        "-c",
        "cat <&3; echo; cat <&4; echo; [ -e /proc/self/fd/5 ] || echo none",
    ]);
    let l = launch(&LaunchSpec {
        program: Path::new("/bin/sh"),
        args: &a,
        output: &inherited,
        placement: &job.placement(),
        inherit: &files,
    })
    .unwrap();
    assert_eq!(wait_exit(&l.pidfd), WaitStatus::Exited(0));
    assert_eq!(
        std::fs::read_to_string(&inherited).unwrap(),
        "first\nsecond\nnone\n"
    );

    // Exit status and exec failure.
    let a = args(&["-c", "exit 7"]);
    let l = launch(&LaunchSpec {
        program: Path::new("/bin/sh"),
        args: &a,
        output: &out,
        placement: &job.placement(),
        inherit: &[],
    })
    .unwrap();
    assert_eq!(wait_exit(&l.pidfd), WaitStatus::Exited(7));
    let err = launch(&LaunchSpec {
        program: Path::new("/nonexistent/colo-vmm"),
        args: &[],
        output: &out,
        placement: &job.placement(),
        inherit: &[],
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/colo-vmm"), "{err}");
    assert!(err.to_string().contains("No such file"), "{err}");
    job.remove(Duration::from_secs(2)).unwrap();
}

#[test]
fn v1_launch_places_before_exec() {
    if !colo_testkit::root_or_skip("v1_launch_places_before_exec") {
        return;
    }
    if colo_testkit::cgroup_version().ok() != Some(colo_testkit::CgroupVersion::V1) {
        eprintln!("SKIPPED v1_launch_places_before_exec: host is not cgroup v1");
        return;
    }
    let _lock = colo_testkit::host_lock();
    let test =
        colo_testkit::TestCgroup::new(&["pids", "cpu", "cpuacct", "blkio"], 256 << 20).unwrap();
    let tree = CgroupTree::open(&CgroupSettings {
        root: Some(PathBuf::from(test.name())),
        ..Default::default()
    })
    .unwrap();
    check_launch(&tree, PlacementMethod::PreExecWrite, "/offline/s1");
    let lines = cgroup_lines(std::process::id());
    assert!(
        !lines.contains("offline"),
        "the test process itself was not moved: {lines}"
    );
}

#[test]
fn v2_launch_clones_into_the_cgroup() {
    if !colo_testkit::root_or_skip("v2_launch_clones_into_the_cgroup") {
        return;
    }
    let _lock = colo_testkit::host_lock();
    let Some(dir) = UnifiedTestDir::new() else {
        eprintln!("SKIPPED v2_launch_clones_into_the_cgroup: no hybrid cgroup2 mount");
        return;
    };
    let tree = CgroupTree::open(&dir.settings()).unwrap();
    check_launch(&tree, PlacementMethod::CloneIntoCgroup, "/offline/s1");
}
