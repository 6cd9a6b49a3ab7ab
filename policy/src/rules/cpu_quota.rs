//! Rule: the offline group's CPU quota. It follows what online leaves free (capacity − online
//! usage − headroom, within [minimum, budget]) at every tick when that shrinks; under CPU
//! interference it is squeezed further, step by step, to the minimum; it grows back only in
//! release steps.

use crate::action::{Action, Direction, Reason, Rule, Signal};
use crate::resource::Resource;
use crate::step::Step;

/// Quota differences below this (cores) are not worth a write.
const EPS: f64 = 1e-3;

/// Online usage wobbles; following it within 1 % of capacity would rewrite the quota every
/// tick for nothing.
fn deadband(x: &Step<'_>) -> f64 {
    (0.01 * finite_or_zero(x.s.node.cpu_capacity)).max(EPS)
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() { v.max(0.0) } else { 0.0 }
}

/// CPU used by everything that is not offline in this sample: the online services, or the
/// node's busy time minus the offline group's when that is larger (system daemons, the agent).
fn online_cpu_now(x: &Step<'_>) -> f64 {
    let services: f64 = x.s.online.iter().map(|o| finite_or_zero(o.cpu_usage)).sum();
    let node = finite_or_zero(x.s.node.cpu_usage) - finite_or_zero(x.s.node.offline_cpu_usage);
    services.max(node)
}

/// Online usage averaged over `cpu.suppress.usage_window` (see [`smooth_usage`]).
fn online_cpu(x: &Step<'_>) -> f64 {
    x.st.online_cpu
        .map_or_else(|| online_cpu_now(x), |(v, _)| v)
}

/// Every tick, before [`target`]: folds this sample's online usage into the exponential moving
/// average with time constant `cpu.suppress.usage_window`. A step of 8 windows or more (the
/// simulator's 10 s steps) replaces it outright: the old value's weight is below 0.04 %.
pub(crate) fn smooth_usage(x: &mut Step<'_>) {
    let now = online_cpu_now(x);
    let w = x.p.usage_window;
    let v = match x.st.online_cpu {
        Some((avg, t)) if w > 0 && avg.is_finite() => {
            let dt = x.now.saturating_sub(t);
            if dt < w.saturating_mul(8) {
                avg + (now - avg) * (1.0 - (-(dt as f64) / w as f64).exp())
            } else {
                now
            }
        }
        _ => now,
    };
    x.st.online_cpu = Some((v, x.now));
}

fn floor(x: &Step<'_>) -> f64 {
    x.p.min_quota.min(x.budget())
}

/// Where the quota would be if online usage were all that mattered.
pub(crate) fn target(x: &Step<'_>) -> f64 {
    let budget = x.budget();
    if !x.p.suppress {
        return budget;
    }
    let cap = finite_or_zero(x.s.node.cpu_capacity);
    let free = cap - online_cpu(x) - x.p.headroom * cap;
    free.clamp(floor(x), budget)
}

fn set(x: &mut Step<'_>, cores: f64, reason: Reason) {
    x.st.quota = cores;
    x.out.push(Action::SetOfflineCpuQuota {
        cores,
        period: x.p.cfs_period,
        reason,
    });
}

/// Every tick: shrink towards the target when online needs more (at most `step_down` of
/// capacity per tick).
pub(crate) fn follow_usage(x: &mut Step<'_>) {
    let t = x.quota_target;
    let q = x.st.quota;
    if t >= q - deadband(x) {
        return;
    }
    let cap = finite_or_zero(x.s.node.cpu_capacity);
    let new = t.max(q - x.p.quota_step_down * cap);
    let reason = Reason {
        rule: Rule::CpuQuota,
        direction: Direction::Squeeze,
        signal: Signal::OnlineCpu,
        value: online_cpu(x),
        threshold: cap * (1.0 - x.p.headroom),
        service: None,
    };
    set(x, new, reason);
    x.st.cpu.last_change = Some(x.now);
}

/// A squeeze step under CPU interference; `false` when already at the minimum.
pub(crate) fn squeeze(x: &mut Step<'_>) -> bool {
    let f = floor(x);
    let q = x.st.quota;
    if !x.p.suppress || q <= f + EPS {
        return false;
    }
    let cap = finite_or_zero(x.s.node.cpu_capacity);
    let new = f.max(q - x.p.quota_step_down * cap).min(q);
    let reason = x.squeeze_reason(Rule::CpuQuota, Resource::Cpu);
    set(x, new, reason);
    true
}

/// A release step: grow towards the target by at most `step_up` of capacity.
pub(crate) fn release(x: &mut Step<'_>) -> bool {
    let t = x.quota_target;
    let q = x.st.quota;
    if q >= t - deadband(x) {
        return false;
    }
    let cap = finite_or_zero(x.s.node.cpu_capacity);
    let new = t.min(q + x.p.quota_step_up * cap);
    let reason = x.release_reason(Rule::CpuQuota, Resource::Cpu);
    set(x, new, reason);
    true
}

#[cfg(test)]
mod tests {
    use crate::testing::{Harness, quotas};

    #[test]
    fn the_quota_follows_online_usage_down_at_once_and_up_slowly() {
        let mut h = Harness::new("cpu:\n  suppress:\n    step_down: 100%\n    usage_window: 0s\n");
        h.capacity(8.0);
        h.online_cpu(2.0);
        h.tick(50);
        h.online_cpu(6.0);
        let q = quotas(&h.tick(50));
        // 8 − 6 − 0.8 headroom = 1.2 cores, at once.
        assert!((q[0] - 1.2).abs() < 1e-9, "{q:?}");
        h.online_cpu(2.0);
        // Signals were calm all along: growth waits only for the cool-down after the last change,
        // then 10 % of capacity per second.
        let mut ups = Vec::new();
        for t in 1..=200 {
            let q = quotas(&h.tick(50));
            if let Some(q) = q.first() {
                ups.push((t * 50, *q));
            }
        }
        assert!(ups[0].0 >= 1_000, "{ups:?}");
        assert!(
            (ups[0].1 - 2.0).abs() < 1e-9,
            "first step 1.2 + 0.8: {ups:?}"
        );
        assert!(ups.windows(2).all(|w| w[1].0 - w[0].0 >= 1_000), "{ups:?}");
        assert!(
            (ups.last().unwrap().1 - 5.2).abs() < 1e-9,
            "up to 8 − 2 − 0.8: {ups:?}"
        );
    }

    #[test]
    fn a_one_tick_burst_does_not_ratchet_the_quota_down_but_sustained_usage_does() {
        let mut h = Harness::new("cpu:\n  suppress:\n    step_down: 100%\n");
        h.capacity(2.0);
        h.online_cpu(0.3);
        for _ in 0..40 {
            h.tick(50);
        }
        // One 50 ms tick at 1.2 cores (a burst of requests, softirq): the 1 s average moves
        // by under 0.05 cores, inside the 1 % deadband of a small move, or a small step.
        h.online_cpu(1.2);
        let q = quotas(&h.tick(50));
        h.online_cpu(0.3);
        assert!(
            q.iter().all(|q| *q > 2.0 - 0.3 - 0.2 - 0.1),
            "a burst barely moves the quota: {q:?}"
        );
        // Sustained growth to 1.2 cores: within ~5 windows the quota reaches 2 − 1.2 − 0.2.
        h.online_cpu(1.2);
        let mut last = f64::NAN;
        for _ in 0..100 {
            if let Some(q) = quotas(&h.tick(50)).last() {
                last = *q;
            }
        }
        assert!((last - 0.6).abs() < 0.05, "follows sustained usage: {last}");
    }

    #[test]
    fn after_interference_growth_waits_for_release_after() {
        let mut h = Harness::new("");
        h.capacity(4.0);
        h.run_delay(0.100);
        for _ in 0..10 {
            h.tick(50);
        }
        h.run_delay(0.001);
        let mut first_up = None;
        for t in 1..=200 {
            if !quotas(&h.tick(50)).is_empty() {
                first_up = Some(t * 50);
                break;
            }
        }
        assert!(first_up.expect("grows again") >= 5_000, "{first_up:?}");
    }

    #[test]
    fn interference_squeezes_to_the_minimum_in_steps() {
        let mut h = Harness::new("");
        h.capacity(4.0);
        h.online_cpu(0.5);
        h.tick(50);
        h.run_delay(0.100);
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.extend(quotas(&h.tick(50)));
        }
        // 3.1 cores (4 − 0.5 − 0.4) → −2 cores per step (50 % of capacity), 100 ms apart → 0.25.
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            (seen[0] - 1.1).abs() < 1e-9 && (seen[1] - 0.25).abs() < 1e-9,
            "{seen:?}"
        );
    }

    #[test]
    fn the_quota_never_exceeds_the_budget() {
        let mut h = Harness::new("");
        h.capacity(8.0);
        h.sample.node.offline_cpu_budget = 2.0;
        let q = quotas(&h.tick(50));
        assert!(q.iter().all(|q| *q <= 2.0), "{q:?}");
        assert_eq!(h.engine.node().offline_cpu_quota, 2.0);
    }
}
