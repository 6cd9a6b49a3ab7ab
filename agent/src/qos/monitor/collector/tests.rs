//! The collector against real cgroups and procfs, and its wake-up delay arithmetic.

use std::path::Path;

use colo_config::agent::Selector;

use super::*;
use crate::host::cgroup::Hierarchies;

#[test]
fn the_node_and_a_service_in_a_real_cgroup() {
    let _lock = colo_testkit::host_lock();
    if !colo_testkit::root_or_skip("collector real cgroup") {
        return;
    }
    let cg = colo_testkit::TestCgroup::new(&["cpu", "cpuacct"], 256 << 20).unwrap();
    let h = Hierarchies::detect(
        colo_config::agent::CgroupVersion::Auto,
        Path::new("/sys/fs/cgroup"),
    )
    .unwrap();
    // A process of our own that burns CPU in the test cgroup.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    cg.add_pid(child.id()).unwrap();
    let mut s = CollectorSettings::new(h, PathBuf::from(cg.name()).join("offline-absent"));
    s.slow_every = Duration::from_millis(10);
    let mut c = Collector::new(s).unwrap();
    c.set_services(vec![ServiceSpec {
        index: 0,
        name: "burner".into(),
        selector: Selector::Cgroups(vec![format!("/{}", cg.name())]),
        sli: None,
    }]);
    let t0 = Instant::now();
    c.tick(t0);
    std::thread::sleep(Duration::from_millis(300));
    let r = c.tick(Instant::now()).clone();
    let _ = child.kill();
    let _ = child.wait();
    assert!(r.node.cpu_capacity >= 1.0);
    assert!(r.node.interval_s > 0.25, "{r:?}");
    let o = r.online[0];
    assert_eq!(o.tasks, 1, "{o:?}");
    assert!(o.cpu > 0.2, "the burner uses CPU: {o:?}");
    assert!(o.run_delay.is_some(), "{o:?}");
    let w = o.wakeup_delay.expect("the burner ran time slices");
    assert!((0.0..0.3).contains(&w), "per-slice wait in seconds: {o:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// Processes this test started, killed when it ends (also on a failed assertion).
struct Burners(Vec<std::process::Child>);

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// On a real v2 host (the TCG suite runs it) a service's own `cpu.pressure`,
/// `memory.pressure` and `io.pressure` are read: more burners in its cgroup than CPUs wait
/// for the CPU, which its `cpu.pressure` counts.
#[test]
fn a_service_s_own_pressure_is_read_from_its_v2_cgroup() {
    let test = "a_service_s_own_pressure_is_read_from_its_v2_cgroup";
    if !colo_testkit::root_or_skip(test) {
        return;
    }
    if colo_testkit::cgroup_version().ok() != Some(colo_testkit::CgroupVersion::V2) {
        eprintln!(
            "\n*** SKIPPED {test}: this host is not cgroup v2 (scripts/tcg-v2-suite.sh runs it on one) ***\n"
        );
        return;
    }
    let _lock = colo_testkit::host_lock();
    let cg = colo_testkit::TestCgroup::new(&["cpu"], 256 << 20).unwrap();
    let h = Hierarchies::detect(
        colo_config::agent::CgroupVersion::Auto,
        Path::new("/sys/fs/cgroup"),
    )
    .unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut burners = Burners(Vec::new());
    for _ in 0..=cpus {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        cg.add_pid(child.id()).unwrap();
        burners.0.push(child);
    }
    let s = CollectorSettings::new(h, PathBuf::from(cg.name()).join("offline-absent"));
    assert!(s.cgroup_psi, "v2 reads a service's own PSI by default");
    let mut c = Collector::new(s).unwrap();
    c.set_services(vec![ServiceSpec {
        index: 0,
        name: "burners".into(),
        selector: Selector::Cgroups(vec![format!("/{}", cg.name())]),
        sli: None,
    }]);
    c.tick(Instant::now());
    // Bounded, not timed: an emulated CPU may take a while to show the first stall.
    let t0 = Instant::now();
    let mut psi = None;
    while t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(300));
        psi = c.tick(Instant::now()).online[0].psi;
        if psi.is_some_and(|p| p.cpu_some > 0.0) {
            break;
        }
    }
    let p = psi.expect("the service's cgroup PSI is read on v2");
    assert!(
        p.cpu_some > 0.0,
        "{} burners on {cpus} CPUs: {p:?}",
        cpus + 1
    );
    for v in [p.memory_some, p.memory_full, p.io_some, p.io_full] {
        assert!((0.0..=1.0).contains(&v), "stall time per second: {p:?}");
    }
    drop(burners);
}

#[test]
fn wakeup_delay_is_the_mean_wait_per_slice_over_the_last_ticks() {
    let mut w = WakeupWindow::default();
    assert_eq!(w.push(0, 0), None);
    assert_eq!(w.push(1_000_000, 100), Some(10e-6));
    // A hiccup tick: 5 ms over 50 slices; the window's mean, not the tick's 100 us.
    let m = w.push(5_000_000, 50).unwrap();
    assert!((m - 6e-3 / 150.0).abs() < 1e-12, "{m}");
    // After WAKEUP_TICKS more calm ticks the hiccup has left the window.
    for _ in 0..WAKEUP_TICKS {
        w.push(1_000_000, 100);
    }
    assert_eq!(w.push(1_000_000, 100), Some(10e-6));
}
