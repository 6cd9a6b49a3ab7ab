//! A latency breach pushed with `coloctl report-sli` throttles the VMs' vCPUs; calm lifts it.

use std::time::{Duration, Instant};

use crate::common::{self};
use crate::{Online, agent_with, burn, cancel, offline_dir, quota, ready};

#[test]
fn a_pushed_sli_breach_throttles_the_vms_and_calm_lifts_it() {
    let test = "a_pushed_sli_breach_throttles_the_vms_and_calm_lifts_it";
    let Some(_lock) = ready(test) else {
        return;
    };
    // The online process only gives the service its cgroup: run delay is off, so the pushed
    // SLI is the only signal. No usage-following quota, so nothing moves without a signal.
    let online = Online::start();
    let policy = "qos_classes:\n  batch:\n    sched_idle: never\ncpu:\n  suppress:\n    enabled: false\n  vcpu_throttle:\n    min_per_vm: 0.2\ntiming:\n  release_after: 1s\n  release_cooldown: 200ms\n  pause_after: null\n  evict_after: null";
    let agent = agent_with(
        &online,
        policy,
        "    slo:\n      p99: 1ms\n      sli: pushed\n",
        "  run_delay: null\n",
    );
    let ids = burn(&agent, 1);
    let vcpu = offline_dir(&agent).join(&ids[0]).join("vcpu");
    let report = |service: &str, values: &[&str]| {
        let mut args = vec!["report-sli", "--service", service];
        args.extend_from_slice(values);
        let o = common::coloctl(&agent, &args);
        (o.status.code(), common::text(&o))
    };

    // Calm without SLI values: no throttle.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        quota(&vcpu),
        None,
        "throttled with no signal:\n{}",
        agent.log_text()
    );

    // An unknown service is refused with the names the agent knows.
    let (code, text) = report("nope", &["100"]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("must name an online service"), "{text}");

    // A breach: p99 5 ms against a 1 ms target. Pushed every 200 ms, as a service would.
    let breach: Vec<String> = std::iter::repeat_n("5000".to_string(), 20).collect();
    let breach: Vec<&str> = breach.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let mut throttled = None;
    while t0.elapsed() < Duration::from_secs(10) {
        let (code, text) = report("online", &breach);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("20 latencies accepted for online"), "{text}");
        if let Some(q) = quota(&vcpu) {
            throttled = Some((t0.elapsed(), q));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let Some((after, q)) = throttled else {
        panic!(
            "no vCPU throttle within 10 s of the breach:\n{}",
            agent.log_text()
        );
    };
    assert!((0.2..1.0).contains(&q), "vCPU quota {q} outside [0.2, 1)");
    assert!(
        agent.log_text().contains("vcpu_throttle: sli "),
        "the action names its signal:\n{}",
        agent.log_text()
    );
    eprintln!(
        "{test}: throttled to {q:.2} cores {:.0} ms after the first push",
        after.as_secs_f64() * 1e3
    );

    // Calm: the pushes stop; the values age out of the 1 s window, and after release_after the
    // throttle is lifted step by step.
    let t1 = Instant::now();
    while quota(&vcpu).is_some() {
        assert!(
            t1.elapsed() < Duration::from_secs(20),
            "the throttle was not lifted 20 s after the last push (quota {:?}):\n{}",
            quota(&vcpu),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{test}: lifted {:.1} s after the last push",
        t1.elapsed().as_secs_f64()
    );
    cancel(&agent, &ids);
}
