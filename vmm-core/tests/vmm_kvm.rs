//! colo-vmm on real KVM with colo's workload guest: exit status, exit record, serial, control
//! socket, pause/resume, vCPU throttling, memory accounting, parent death, bad input.
//!
//! Every test holds `colo_testkit::host_lock()` for its whole run (KVM, cgroups, timing).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colo_testkit::{CgroupVersion, TestCgroup, host_lock};
use colo_vmm::{EXIT_BAD_INPUT, EXIT_SHUTDOWN, ExitReason, ExitRecord};
use common::{VMM, Vm, VmArgs, can_run, thread_cpu_ns};

#[test]
fn guest_exit_code_becomes_the_exit_status_and_the_record_says_so() {
    if !can_run("guest_exit_code_becomes_the_exit_status", false) {
        return;
    }
    let _lock = host_lock();
    let mut vm = Vm::start(VmArgs {
        cmdline: "cpu=5 exit=3",
        ..Default::default()
    });
    let status = vm.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3));
    assert!(vm.serial().contains("colo-guest: up"), "{:?}", vm.serial());
    let rec = ExitRecord::read(&vm.path("exit.json")).unwrap();
    assert_eq!(rec.exit_code, 3);
    assert_eq!(rec.reason, ExitReason::GuestExit);
    assert_eq!(rec.pid, vm.pid);
    assert!(rec.ended_unix_ms > 0 && rec.cpu_seconds >= 0.0);
    let end = vm
        .wait_stderr("colo-vmm: guest_exit", Duration::from_secs(5))
        .unwrap();
    assert!(end.contains("exit status 3"), "{end}");
}

#[test]
fn log_file_gets_the_started_line() {
    if !can_run("log_file_gets_the_started_line", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vmm.log");
    let out = Command::new(VMM)
        .args(["run", "--kernel"])
        .arg(colo_vmm::workload_guest_path().unwrap())
        .args(["--cmdline", "exit=0", "--serial"])
        .arg(dir.path().join("serial"))
        .arg("--log")
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let started = text.lines().next().unwrap();
    assert!(started.starts_with("colo-vmm: started pid="), "{text}");
    assert!(text.contains("guest_exit"), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(started), "{stderr}");
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    if !can_run("pause_stops_progress_and_resume_restarts_it", false) {
        return;
    }
    let _lock = host_lock();
    let mut vm = Vm::start(VmArgs {
        cmdline: "cpu=forever",
        vcpus: 2,
        ..Default::default()
    });
    assert_eq!(vm.vcpu_tids.len(), 2);
    for (i, tid) in vm.vcpu_tids.iter().enumerate() {
        let comm = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", vm.pid)).unwrap();
        assert_eq!(comm.trim(), format!("colo-vcpu-{i}"));
    }
    let mut ctl = vm.control();
    wait_progress(&mut ctl, 20, Duration::from_secs(20));
    let s = ctl.stats().unwrap();
    assert_eq!(s.pid, vm.pid);
    assert_eq!(
        s.vcpus.iter().map(|v| v.tid).collect::<Vec<_>>(),
        vm.vcpu_tids
    );
    assert!(s.exits.io >= 1, "the serial marker is an I/O exit: {s:?}");
    assert_eq!(s.memory.guest_bytes, 128 << 20);

    ctl.pause().unwrap();
    let paused = ctl.stats().unwrap();
    assert_eq!(paused.state, colo_vmm::control::VmState::Paused);
    let cpu0: Vec<u64> = vm
        .vcpu_tids
        .iter()
        .map(|t| thread_cpu_ns(vm.pid, *t))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let still = ctl.stats().unwrap();
    assert_eq!(
        still.progress, paused.progress,
        "progress moved while paused"
    );
    for (t, before) in vm.vcpu_tids.iter().zip(cpu0) {
        let burnt = thread_cpu_ns(vm.pid, *t) - before;
        assert!(burnt < 50_000_000, "paused vCPU {t} burnt {burnt} ns");
    }

    ctl.resume().unwrap();
    let resumed = wait_progress(&mut ctl, paused.progress + 50, Duration::from_secs(20));
    assert_eq!(resumed.state, colo_vmm::control::VmState::Running);
    // Both vCPUs burn: each did work since the start.
    for v in &resumed.vcpus {
        assert!(
            v.cpu_ns > 10_000_000,
            "vCPU {} did not run: {resumed:?}",
            v.index
        );
    }

    ctl.shutdown().unwrap();
    assert_eq!(vm.wait(Duration::from_secs(10)).code(), Some(EXIT_SHUTDOWN));
    let rec = ExitRecord::read(&vm.path("exit.json")).unwrap();
    assert_eq!(rec.reason, ExitReason::Shutdown);
    assert!(!vm.path("ctl.sock").exists(), "socket removed at exit");
}

/// Polls `stats` until progress reaches `at_least`.
fn wait_progress(
    ctl: &mut colo_vmm::ControlClient,
    at_least: u64,
    timeout: Duration,
) -> colo_vmm::Stats {
    let deadline = Instant::now() + timeout;
    loop {
        let s = ctl.stats().unwrap();
        if s.progress >= at_least {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "progress stuck at {} (< {at_least})",
            s.progress
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time and progress of vCPU 0 over `window`.
fn measure(vm: &Vm, ctl: &mut colo_vmm::ControlClient, window: Duration) -> (f64, f64) {
    let tid = vm.vcpu_tids[0];
    let (c0, p0, t0) = (
        thread_cpu_ns(vm.pid, tid),
        ctl.stats().unwrap().progress,
        Instant::now(),
    );
    std::thread::sleep(window);
    let (c1, p1, secs) = (
        thread_cpu_ns(vm.pid, tid),
        ctl.stats().unwrap().progress,
        t0.elapsed().as_secs_f64(),
    );
    ((c1 - c0) as f64 / 1e9 / secs, (p1 - p0) as f64 / secs)
}

#[test]
fn vcpu_thread_in_a_quarter_cpu_cgroup_runs_at_a_quarter() {
    if !can_run(
        "vcpu_thread_in_a_quarter_cpu_cgroup_runs_at_a_quarter",
        true,
    ) {
        return;
    }
    let _lock = host_lock();
    let cg = TestCgroup::new(&["cpu"], 1 << 30).unwrap();
    let vm = Vm::start(VmArgs {
        cmdline: "cpu=forever",
        ..Default::default()
    });
    let mut ctl = vm.control();
    wait_progress(&mut ctl, 10, Duration::from_secs(20));
    let (base_cpu, base_rate) = measure(&vm, &mut ctl, Duration::from_secs(5));

    let tid = vm.vcpu_tids[0].to_string();
    match cg.version() {
        CgroupVersion::V1 => {
            cg.write("cpu", "cpu.cfs_period_us", "100000").unwrap();
            cg.write("cpu", "cpu.cfs_quota_us", "25000").unwrap();
            cg.write("cpu", "tasks", &tid).unwrap();
        }
        CgroupVersion::V2 | CgroupVersion::Auto => {
            cg.add_pid(vm.pid).unwrap();
            let child = cg.mkdir_child("vcpu").unwrap();
            let dir = std::path::Path::new("/sys/fs/cgroup").join(child);
            std::fs::write(dir.join("cgroup.type"), "threaded").unwrap();
            std::fs::write(dir.join("cpu.max"), "25000 100000").unwrap();
            std::fs::write(dir.join("cgroup.threads"), &tid).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (thr_cpu, thr_rate) = measure(&vm, &mut ctl, Duration::from_secs(5));
    // Absolute CPU, not a ratio to the baseline: on a shared host the baseline may get less than
    // a whole CPU, while the quota caps the throttled run at a quarter of one whatever the load.
    // The guest's work per CPU-second must stay what it was: the quota slows it, nothing else.
    let per_cpu_ratio = (thr_rate / thr_cpu) / (base_rate / base_cpu);
    eprintln!(
        "baseline {base_cpu:.3} CPU, {base_rate:.0} units/s; throttled {thr_cpu:.3} CPU, {thr_rate:.0} units/s; progress per CPU-second, throttled/baseline {per_cpu_ratio:.3}"
    );
    assert!(
        (0.15..=0.30).contains(&thr_cpu),
        "the throttled vCPU used {thr_cpu:.3} CPU under a 0.25 quota"
    );
    assert!(
        (0.7..=1.3).contains(&per_cpu_ratio),
        "progress per CPU-second changed by {per_cpu_ratio:.3}x"
    );
    // The rates compare only when the baseline had most of a CPU: on a host loaded by others
    // (stress-ng beside the suite) the baseline itself may get about a quarter of one, and then
    // the quota does not slow the guest further (the CPU checks above still hold).
    if base_cpu >= 0.6 {
        assert!(
            thr_rate < base_rate * 0.5,
            "progress {thr_rate:.0} units/s under the quota, {base_rate:.0} without"
        );
    } else {
        eprintln!(
            "the baseline got {base_cpu:.3} CPU on this loaded host: the rates were not compared"
        );
    }
    ctl.shutdown().unwrap();
}

fn memory_usage(cg: &TestCgroup) -> u64 {
    let file = match cg.version() {
        CgroupVersion::V1 => "memory.usage_in_bytes",
        CgroupVersion::V2 | CgroupVersion::Auto => "memory.current",
    };
    cg.read("memory", file).unwrap().trim().parse().unwrap()
}

#[test]
fn guest_memory_is_charged_to_the_vmm_cgroup() {
    if !can_run("guest_memory_is_charged_to_the_vmm_cgroup", true) {
        return;
    }
    let _lock = host_lock();
    const MIB: u64 = 1 << 20;

    // Lazy: an idle 256 MiB guest costs little; touching 200 MiB charges at least 200 MiB.
    let cg = TestCgroup::new(&[], 768 * MIB).unwrap();
    let mut vm = Vm::start(VmArgs {
        cmdline: "hold=60",
        memory_mib: 256,
        join_cgroup_procs: Some(cg.dir("memory").join("cgroup.procs")),
        ..Default::default()
    });
    assert!(vm.wait_serial("colo-guest: up", Duration::from_secs(10)));
    let idle = memory_usage(&cg);
    assert!(
        idle < 64 * MIB,
        "idle 256 MiB guest charged {} MiB",
        idle / MIB
    );
    vm.control().shutdown().unwrap();
    vm.wait(Duration::from_secs(10));
    drop(vm);
    drop(cg);

    let cg = TestCgroup::new(&[], 768 * MIB).unwrap();
    let vm = Vm::start(VmArgs {
        cmdline: "mem=200 hold=60",
        memory_mib: 256,
        join_cgroup_procs: Some(cg.dir("memory").join("cgroup.procs")),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut usage = memory_usage(&cg);
    while usage < 200 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        usage = memory_usage(&cg);
    }
    assert!(
        usage >= 200 * MIB,
        "touching 200 MiB charged only {} MiB",
        usage / MIB
    );
    // The cgroup's charge (pages plus page tables) can cross 200 MiB a moment before the
    // guest's resident set does: poll the VMM's own figure too.
    let mut s = vm.control().stats().unwrap();
    while s.memory.resident_bytes < 200 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        s = vm.control().stats().unwrap();
    }
    assert!(s.memory.resident_bytes >= 200 * MIB, "{s:?}");
    vm.control().shutdown().unwrap();
    drop(vm);
    drop(cg);

    // Prefault: the whole guest is charged from the start.
    let cg = TestCgroup::new(&[], 768 * MIB).unwrap();
    let vm = Vm::start(VmArgs {
        cmdline: "hold=60",
        memory_mib: 256,
        extra: vec!["--prefault".into()],
        join_cgroup_procs: Some(cg.dir("memory").join("cgroup.procs")),
        ..Default::default()
    });
    let usage = memory_usage(&cg);
    assert!(
        usage >= 256 * MIB,
        "prefaulted guest charged {} MiB",
        usage / MIB
    );
    vm.control().shutdown().unwrap();
}

#[test]
fn vmm_outlives_the_process_that_started_it() {
    if !can_run("vmm_outlives_the_process_that_started_it", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("exit.json");
    let serial = dir.path().join("serial.log");
    // The parent shell starts the VMM with its stdout/stderr on pipes to us, then is killed; we
    // close our ends too, so the VMM's later writes to stderr hit a broken pipe.
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" run --kernel "$1" --cmdline "hold=1.5 exit=7" --serial "$2" --exit-record "$3" & echo $!; exec sleep 60"#)
        .arg(VMM)
        .arg(colo_vmm::workload_guest_path().unwrap())
        .arg(&serial)
        .arg(&record)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let vmm_pid: u32 = line.trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    parent.kill().unwrap();
    parent.wait().unwrap();
    drop(parent.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !record.exists() {
        assert!(Instant::now() < deadline, "the VMM left no exit record");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rec = ExitRecord::read(&record).unwrap();
    assert_eq!(rec.pid, vmm_pid);
    assert_eq!((rec.exit_code, rec.reason), (7, ExitReason::GuestExit));
    assert!(
        std::fs::read_to_string(&serial)
            .unwrap()
            .contains("colo-guest: up")
    );
}

#[test]
fn bad_input_fails_with_one_line_naming_the_cause() {
    if !can_run("bad_input_fails_with_one_line_naming_the_cause", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let guest = colo_vmm::workload_guest_path().unwrap();
    let guest = guest.to_str().unwrap();
    let text = dir.path().join("kernel.txt");
    std::fs::write(&text, "not a kernel\n").unwrap();
    let text = text.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--kernel", "/nonexistent/vmlinux"], "No such file"),
        (vec!["--kernel", text], "not an ELF"),
        (vec!["--kernel", guest, "--vcpus", "0"], "--vcpus 0"),
        (
            vec!["--kernel", guest, "--memory-mib", "100000000"],
            "more than this host has",
        ),
        (vec!["--kernel", guest, "--vcpus", "33"], "at most 32 vCPUs"),
        (
            vec!["--kernel", guest, "--memory-mib", "lots"],
            "memory-mib",
        ),
        (vec!["--kernel", guest, "--frobnicate"], "--frobnicate"),
    ];
    for (args, cause) in cases {
        let rec = dir.path().join("rec.json");
        let out = Command::new(VMM)
            .arg("run")
            .args(&args)
            .arg("--exit-record")
            .arg(&rec)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(EXIT_BAD_INPUT),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(cause), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        if !args.contains(&"--frobnicate") && !args.contains(&"lots") {
            let r = ExitRecord::read(&rec).unwrap();
            assert_eq!(
                (r.exit_code, r.reason),
                (EXIT_BAD_INPUT, ExitReason::VmmError)
            );
        }
        let _ = std::fs::remove_file(&rec);
    }

    // A second VM on a live control socket is refused; the first one is unharmed.
    let mut first = Vm::start(VmArgs {
        cmdline: "hold=30",
        ..Default::default()
    });
    let out = Command::new(VMM)
        .args(["run", "--kernel", guest, "--control-socket"])
        .arg(first.path("ctl.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_BAD_INPUT), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    first.control().shutdown().unwrap();
    assert_eq!(
        first.wait(Duration::from_secs(10)).code(),
        Some(EXIT_SHUTDOWN)
    );
}
