//! `cargo bench -p colo-policy --bench step`: nanoseconds per `Engine::step` (no criterion; prints
//! a table). Scenarios: the simulator's node (3 online services, 4 VMs, 10 s steps) and an agent
//! node (3 services, 50 VMs, 50 ms steps), over histories that run every rule.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use colo_policy::Engine;

/// The busy history (interference comes and goes), or a calm one (signals wobble below their
/// thresholds, usage moves: the common case).
fn advance(s: &mut colo_policy::NodeSample, i: u64, period: Duration, calm: bool) {
    if calm {
        s.now += period;
        for (k, o) in s.online.iter_mut().enumerate() {
            o.run_delay = Some(0.001 + ((i + k as u64) % 7) as f64 * 1e-4);
            o.cpu_usage = 2.0 + ((i + k as u64) % 5) as f64 * 0.01;
        }
    } else {
        common::advance(s, i, period);
    }
}

/// CPU time of this thread: unlike wall time it does not count the time other processes hold
/// the CPU (the development machine is shared).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn run(name: &str, services: u32, vms: u64, period: Duration, steps: u64, calm: bool) {
    if std::env::var("ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let mut engine = Engine::new(&colo_config::Policy::default());
    let mut s = common::node(services, vms);
    let mut out = Vec::with_capacity(128);
    let mut next_id = 1_000_000;
    // Warm-up, untimed.
    for i in 0..steps / 10 {
        advance(&mut s, i, period, calm);
        engine.step(&s, &mut out);
        common::apply(&mut s, &out, &mut next_id);
    }
    let base = s.clone();
    let range = steps / 10..steps / 10 + steps;

    // The history with the engine in it…
    let mut actions = 0u64;
    let t = thread_cpu();
    for i in range.clone() {
        advance(&mut s, i, period, calm);
        engine.step(black_box(&s), &mut out);
        actions += out.len() as u64;
        common::apply(&mut s, &out, &mut next_id);
    }
    let with_engine = thread_cpu() - t;

    // …and the same loop without it (sample updates only), to subtract.
    let mut s = base;
    let none: Vec<colo_policy::Action> = Vec::new();
    let t = thread_cpu();
    for i in range {
        advance(&mut s, i, period, calm);
        black_box(&s);
        common::apply(&mut s, black_box(&none), &mut next_id);
    }
    let without = thread_cpu() - t;
    let per = |d: Duration| d.as_nanos() as f64 / steps as f64;
    println!(
        "{name:<38} {steps:>9} steps {:>8.1} ns/step  ({:.2} actions/step; loop {:.1} − sample updates {:.1})",
        per(with_engine) - per(without),
        actions as f64 / steps as f64,
        per(with_engine),
        per(without),
    );
}

fn main() {
    let steps: u64 = std::env::var("STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    println!("colo-policy Engine::step, {steps} steps per scenario (thread CPU time)");
    let sim = Duration::from_secs(10);
    let agent = Duration::from_millis(50);
    run("sim node, calm: 3 services, 4 VMs", 3, 4, sim, steps, true);
    run("sim node, busy: 3 services, 4 VMs", 3, 4, sim, steps, false);
    run("sim node, busy: 1 service, 8 VMs", 1, 8, sim, steps, false);
    run(
        "agent node, calm: 3 services, 50 VMs",
        3,
        50,
        agent,
        steps / 10,
        true,
    );
    run(
        "agent node, busy: 3 services, 50 VMs",
        3,
        50,
        agent,
        steps / 10,
        false,
    );
}
