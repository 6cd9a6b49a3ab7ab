//! The IO path on real KVM: the workload guest's virtio-blk driver against colo-vmm's
//! virtio-mmio block device, its `colo-io` thread and token buckets.
//!
//! Every test holds `colo_testkit::host_lock()` for its whole run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use colo_testkit::host_lock;
use colo_vmm::EXIT_BAD_INPUT;
use common::{VMM, Vm, VmArgs, can_run};

const MIB: u64 = 1 << 20;
const PATTERN_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// A sparse raw disk of `mib` MiB in `dir`.
fn disk(dir: &Path, mib: u64) -> String {
    let path = dir.join("disk.img");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(mib * MIB).unwrap();
    path.to_str().unwrap().to_string()
}

/// The checksum the guest computes: sum over qwords of (qword ^ index).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).enumerate().fold(0u64, |s, (i, q)| {
        s.wrapping_add(u64::from_le_bytes(q.try_into().unwrap()) ^ i as u64)
    })
}

#[test]
fn guest_writes_and_reads_64_mib_through_virtio_blk() {
    if !can_run("guest_writes_and_reads_64_mib_through_virtio_blk", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path(), 80);

    let mut vm = Vm::start(VmArgs {
        cmdline: "io=write:64 exit=0",
        extra: vec!["--disk".into(), img.clone()],
        ..Default::default()
    });
    assert_eq!(
        vm.wait(Duration::from_secs(120)).code(),
        Some(0),
        "{}",
        vm.serial()
    );
    assert!(
        vm.serial().contains("colo-guest: io write done"),
        "{}",
        vm.serial()
    );
    let data = std::fs::read(&img).unwrap();
    for (i, q) in data[..(64 * MIB) as usize].chunks_exact(8).enumerate() {
        let want = (i as u64).wrapping_mul(PATTERN_MUL);
        assert_eq!(u64::from_le_bytes(q.try_into().unwrap()), want, "qword {i}");
    }
    assert!(
        data[(64 * MIB) as usize..].iter().all(|b| *b == 0),
        "wrote past 64 MiB"
    );

    // Read it back through a read-only disk; the guest prints its checksum of what it read.
    let mut vm = Vm::start(VmArgs {
        cmdline: "io=read:64 exit=0",
        extra: vec!["--disk".into(), format!("{img},ro")],
        ..Default::default()
    });
    assert_eq!(
        vm.wait(Duration::from_secs(120)).code(),
        Some(0),
        "{}",
        vm.serial()
    );
    let want = format!(
        "colo-guest: io read done checksum=0x{:016x}",
        checksum(&data[..(64 * MIB) as usize])
    );
    assert!(vm.serial().contains(&want), "{} / want {want}", vm.serial());

    // A write to a read-only disk is refused by the device: the guest reports an IO error (61).
    let mut vm = Vm::start(VmArgs {
        cmdline: "io=write:1 exit=0",
        extra: vec!["--disk".into(), format!("{img},ro")],
        ..Default::default()
    });
    assert_eq!(
        vm.wait(Duration::from_secs(60)).code(),
        Some(61),
        "{}",
        vm.serial()
    );
}

/// Runs the workload guest with `cmdline` on a 64 MiB disk in 256 MiB of memory to its end: its
/// exit code, its serial output and the VMM's peak RSS (VmHWM, KiB) last read while it ran.
fn run_for_peak_rss(cmdline: &str, img: &str) -> (Option<i32>, String, u64) {
    let mut vm = Vm::start(VmArgs {
        cmdline,
        memory_mib: 256,
        extra: vec!["--disk".into(), img.to_string()],
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peak_kib = 0;
    let status = loop {
        let hwm = std::fs::read_to_string(format!("/proc/{}/status", vm.pid))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            });
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        if let Some(status) = vm.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{cmdline}: {}", vm.serial());
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), vm.serial(), peak_kib)
}

/// A driver that breaks the rules cannot make the VMM allocate what it likes or follow tables
/// it never offered: a 63 MiB data segment off a page boundary moves through the small bounce
/// buffer (the VMM's peak RSS stays within 16 MiB of the same guest without IO; a bounce
/// buffer the segment's size would add 63 MiB), and a chain with an indirect descriptor gets
/// DEVICE_NEEDS_RESET instead of a completion.
#[test]
fn a_hostile_driver_gets_a_reset_and_no_large_bounce_buffer() {
    if !can_run(
        "a_hostile_driver_gets_a_reset_and_no_large_bounce_buffer",
        false,
    ) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path(), 64);
    // Both guests first write 64 MiB of their memory, where the hostile segment then lies, so
    // guest pages count the same in both.
    let (code, serial, baseline) = run_for_peak_rss("mem=64 hold=1 exit=0", &img);
    assert_eq!(code, Some(0), "{serial}");
    let (code, serial, hostile) = run_for_peak_rss("mem=64 io=hostile hold=1 exit=0", &img);
    assert_eq!(code, Some(0), "{serial}");
    eprintln!("peak RSS: {baseline} KiB without IO, {hostile} KiB with the hostile driver");
    assert!(
        serial.contains("colo-guest: hostile unaligned write status=0x0000000000000000"),
        "{serial}"
    );
    assert!(
        serial.contains("colo-guest: hostile indirect chain: device needs reset"),
        "{serial}"
    );
    assert!(
        hostile < baseline + 16 * 1024,
        "peak RSS {hostile} KiB with the hostile driver, {baseline} KiB without IO"
    );
}

/// Guest IO throughput (progress bytes/s) over `window`, after the first `skip` bytes.
fn measure_rate(vm: &Vm, skip: u64, window: Duration) -> f64 {
    let mut ctl = vm.control();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut s = ctl.stats().unwrap();
    while s.progress < skip {
        assert!(Instant::now() < deadline, "IO did not start: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
        s = ctl.stats().unwrap();
    }
    let (p0, t0) = (s.progress, Instant::now());
    std::thread::sleep(window);
    let p1 = ctl.stats().unwrap().progress;
    (p1 - p0) as f64 / t0.elapsed().as_secs_f64()
}

#[test]
fn bandwidth_limits_of_8_and_16_mib_hold_within_15_percent() {
    if !can_run(
        "bandwidth_limits_of_8_and_16_mib_hold_within_15_percent",
        false,
    ) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path(), 128);
    for (limit_mib, read_mib) in [(8u64, 64u64), (16, 112)] {
        let vm = Vm::start(VmArgs {
            cmdline: &format!("io=read:{read_mib} exit=0"),
            extra: vec!["--disk".into(), format!("{img},ro,bw={limit_mib}MiB")],
            ..Default::default()
        });
        // Skip the first bucket (125 ms worth) and a little more, then measure 5 s.
        let rate = measure_rate(&vm, 2 * MIB, Duration::from_secs(5));
        let limit = (limit_mib * MIB) as f64;
        let err = (rate - limit) / limit;
        eprintln!(
            "limit {limit_mib} MiB/s: measured {:.2} MiB/s ({:+.1} %)",
            rate / MIB as f64,
            err * 100.0
        );
        assert!(err.abs() <= 0.15, "{limit_mib} MiB/s limit gave {rate} B/s");
        vm.control().shutdown().unwrap();
    }
}

#[test]
fn live_set_io_limit_changes_the_rate() {
    if !can_run("live_set_io_limit_changes_the_rate", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path(), 128);
    let vm = Vm::start(VmArgs {
        cmdline: "io=read:120 exit=0",
        extra: vec!["--disk".into(), format!("{img},ro,bw=4MiB")],
        ..Default::default()
    });
    let mut ctl = vm.control();
    let s = ctl.stats().unwrap();
    let io_tid = s.io_tid.expect("an IO thread");
    let comm = std::fs::read_to_string(format!("/proc/{}/task/{io_tid}/comm", vm.pid)).unwrap();
    assert_eq!(comm.trim(), "colo-io");
    assert_eq!(s.disks.len(), 1);
    assert_eq!((s.disks[0].bw, s.disks[0].iops), (4 * MIB, 0));

    let slow = measure_rate(&vm, MIB, Duration::from_secs(2));
    ctl.set_io_limit("0", 16 * MIB, 0).unwrap();
    assert_eq!(ctl.stats().unwrap().disks[0].bw, 16 * MIB);
    let fast = measure_rate(&vm, 0, Duration::from_secs(2));
    eprintln!(
        "before {:.2} MiB/s, after set_io_limit {:.2} MiB/s",
        slow / MIB as f64,
        fast / MIB as f64
    );
    assert!(slow < 5.0 * MIB as f64, "{slow}");
    assert!(fast > 2.5 * slow, "slow {slow} fast {fast}");
    let err = ctl.set_io_limit("7", 1, 0).unwrap_err().to_string();
    assert!(err.contains("no disk `7`"), "{err}");
    let s = ctl.stats().unwrap();
    assert!(s.disks[0].read_bytes > 0 && s.disks[0].ops > 0, "{s:?}");
    ctl.shutdown().unwrap();
}

#[test]
fn io_forever_streams_the_same_region_until_shutdown() {
    if !can_run("io_forever_streams_the_same_region_until_shutdown", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path(), 8);
    let vm = Vm::start(VmArgs {
        cmdline: "io=write:2:forever exit=0",
        extra: vec!["--disk".into(), format!("{img},bw=16MiB")],
        ..Default::default()
    });
    // 2 MiB per pass at 16 MiB/s: about sixteen passes in 2 s of streaming. Half that rate
    // passes: a loaded host may stall the vCPU or IO thread for a moment, not for a second.
    let rate = measure_rate(&vm, 2 * MIB, Duration::from_secs(2));
    let mut ctl = vm.control();
    let s = ctl.stats().unwrap();
    assert!(s.progress > 6 * MIB, "kept streaming past one pass: {s:?}");
    assert!(rate > 8.0 * MIB as f64, "{rate}");
    assert_eq!(s.state, colo_vmm::control::VmState::Running);
    ctl.shutdown().unwrap();
    // Only the first 2 MiB were written, with the pattern of a single pass.
    let bytes = std::fs::read(&img).unwrap();
    let q = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(q(1), PATTERN_MUL);
    assert_eq!(
        q((2 * MIB as usize) / 8 - 1),
        (2 * MIB / 8 - 1).wrapping_mul(PATTERN_MUL)
    );
    assert!(
        bytes[2 * MIB as usize..].iter().all(|b| *b == 0),
        "nothing past the region"
    );
}

#[test]
fn a_guest_whose_io_the_bucket_holds_back_sleeps_instead_of_spinning() {
    if !can_run(
        "a_guest_whose_io_the_bucket_holds_back_sleeps_instead_of_spinning",
        false,
    ) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path(), 8);
    let vm = Vm::start(VmArgs {
        cmdline: "io=write:2:forever exit=0",
        extra: vec!["--disk".into(), format!("{img},bw=4MiB")],
        ..Default::default()
    });
    // The driver polls its used ring briefly, then halts until the disk's interrupt: at 4 MiB/s
    // (32 requests a second) its vCPU idles nearly all the time. A polling driver kept it
    // runnable all the time (93-100 % of a core on an idle host), so its CPU time plus its
    // run-queue wait is the wall time on any host; a loaded host only moves time between them.
    // A halting one wants ~1 % on an idle host; each of its wake-ups waits in the run queue of
    // a loaded one (34 % at load 8 on 2 CPUs), hence the bound of 60 %.
    let mut ctl = vm.control();
    let s = ctl.stats().unwrap();
    let (pid, tid) = (s.pid, s.vcpus[0].tid);
    let w0 = common::thread_wanted_ns(pid, tid);
    let t0 = Instant::now();
    let rate = measure_rate(&vm, 0, Duration::from_secs(3));
    let wanted = (common::thread_wanted_ns(pid, tid) - w0) as f64 / 1e9;
    let share = wanted / t0.elapsed().as_secs_f64();
    assert!(
        share < 0.25,
        "vCPU wanted a CPU {:.0} % of the time",
        share * 100.0
    );
    assert!(rate > 2.0 * MIB as f64, "IO still flows: {rate} B/s");
    ctl.shutdown().unwrap();
}

#[test]
fn bad_disks_are_refused_with_one_line() {
    if !can_run("bad_disks_are_refused_with_one_line", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let guest = colo_vmm::workload_guest_path().unwrap();
    for (spec, cause) in [
        ("/nonexistent/disk.img".to_string(), "No such file"),
        (
            empty.to_str().unwrap().to_string(),
            "no whole 512-byte sector",
        ),
        (format!("{},speed=1", empty.display()), "unknown option"),
    ] {
        let out = Command::new(VMM)
            .args(["run", "--kernel"])
            .arg(&guest)
            .args(["--disk", &spec])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_BAD_INPUT), "{spec}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{spec}: {stderr}");
        assert!(stderr.contains(cause), "{spec}: {stderr}");
    }
}
