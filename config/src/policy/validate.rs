//! Checks that need more than one field, or a range the type alone cannot express. Each
//! violation names the field path; the loader turns paths into file:line:column.

use std::time::Duration;

use super::{Policy, Threshold};
use crate::error::ErrorKind;
use crate::units::{Percent, StallRate, format_duration};

/// One broken rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Violation {
    /// The field at fault.
    pub path: String,
    /// The other field involved, for conflicts.
    pub related: Option<String>,
    /// `InvalidValue` or `Conflict`.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
    /// The value at fault.
    pub value: String,
    /// What would be accepted.
    pub allowed: Option<String>,
}

#[derive(Default)]
struct Checker {
    out: Vec<Violation>,
}

impl Checker {
    fn invalid(&mut self, path: &str, value: impl ToString, message: &str, allowed: &str) {
        self.out.push(Violation {
            path: path.to_owned(),
            related: None,
            kind: ErrorKind::InvalidValue,
            message: format!("invalid value `{}`: {message}", value.to_string()),
            value: value.to_string(),
            allowed: Some(allowed.to_owned()),
        });
    }

    fn conflict(&mut self, path: &str, value: impl ToString, related: &str, message: String) {
        self.out.push(Violation {
            path: path.to_owned(),
            related: Some(related.to_owned()),
            kind: ErrorKind::Conflict,
            message,
            value: value.to_string(),
            allowed: None,
        });
    }

    fn positive_percent(&mut self, path: &str, p: Percent) {
        if p.value() <= 0.0 {
            self.invalid(
                path,
                p,
                "must be above 0%, or the step does nothing",
                "0% < value <= 100%",
            );
        }
    }

    fn threshold<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        path: &str,
        t: &Option<Threshold<T>>,
    ) {
        if let Some(t) = t
            && t.low.partial_cmp(&t.high) != Some(std::cmp::Ordering::Less)
        {
            self.conflict(
                &format!("{path}.low"),
                t.low,
                &format!("{path}.high"),
                format!(
                    "low threshold `{}` must be below the high threshold `{}` (hysteresis band)",
                    t.low, t.high
                ),
            );
        }
    }

    fn psi(&mut self, path: &str, t: &Option<Threshold<StallRate>>) {
        self.threshold(path, t);
        if let Some(t) = t
            && t.high > StallRate::from_millis_per_sec(1000)
        {
            self.invalid(
                &format!("{path}.high"),
                t.high,
                "PSI stall time cannot exceed the wall time",
                "at most `1s/s`",
            );
        }
    }

    fn weight(&mut self, path: &str, w: f64) {
        if !(w.is_finite() && w >= 0.0) {
            self.invalid(
                path,
                w,
                "weights must be finite and not negative",
                "a number >= 0",
            );
        }
    }

    fn score(&mut self, path: &str, s: f64) {
        if !(s.is_finite() && (0.0..=100.0).contains(&s)) {
            self.invalid(path, s, "scores range from 0 to 100", "0 <= value <= 100");
        }
    }
}

/// Every violation in `p`, in schema order.
pub(crate) fn validate(p: &Policy) -> Vec<Violation> {
    let mut c = Checker::default();

    // CPU
    let s = &p.cpu.suppress;
    if s.headroom.value() >= 100.0 {
        c.invalid(
            "cpu.suppress.headroom",
            s.headroom,
            "headroom must leave some CPU",
            "0% <= value < 100%",
        );
    }
    c.positive_percent("cpu.suppress.step_down", s.step_down);
    c.positive_percent("cpu.suppress.step_up", s.step_up);
    if !(Duration::from_millis(1)..=Duration::from_secs(1)).contains(&s.cfs_period) {
        c.invalid(
            "cpu.suppress.cfs_period",
            format_duration(s.cfs_period),
            "the kernel accepts CFS periods from 1ms to 1s (10ms-20ms lets a quota change bite at once)",
            "1ms..=1s",
        );
    }
    let v = &p.cpu.vcpu_throttle;
    c.positive_percent("cpu.vcpu_throttle.step_down", v.step_down);
    if let Some(max) = v.max_step_down
        && max.value() < v.step_down.value()
    {
        c.invalid(
            "cpu.vcpu_throttle.max_step_down",
            max,
            &format!(
                "must be at least step_down ({}): it caps how much a step grows when the signal is far above its threshold",
                v.step_down
            ),
            "step_down <= value <= 100%, or null",
        );
    }
    c.positive_percent("cpu.vcpu_throttle.step_up", v.step_up);

    // Memory
    let m = &p.memory;
    if m.evict_at.value() <= 0.0 {
        c.invalid(
            "memory.evict_at",
            m.evict_at,
            "must be above 0%",
            "0% < value <= 100%",
        );
    }
    if m.stop_at >= m.evict_at {
        c.conflict(
            "memory.stop_at",
            m.stop_at,
            "memory.evict_at",
            format!(
                "`{}` must be below memory.evict_at (`{}`): eviction stops below the level that \
                 starts it",
                m.stop_at, m.evict_at
            ),
        );
    }

    // IO
    let io = &p.io;
    for (path, rate, burst) in [
        (
            "io.vm.bandwidth_burst",
            io.vm.bandwidth.is_some(),
            io.vm.bandwidth_burst.map(|b| b.to_string()),
        ),
        (
            "io.vm.iops_burst",
            io.vm.iops.is_some(),
            io.vm.iops_burst.map(|b| b.to_string()),
        ),
    ] {
        if let Some(burst) = burst
            && !rate
        {
            let base = path.trim_end_matches("_burst");
            c.conflict(
                path,
                burst,
                base,
                format!("a burst needs a sustained rate: set {base} too, or set this to null"),
            );
        }
    }
    for (path, zero) in [
        (
            "io.vm.bandwidth",
            io.vm.bandwidth.is_some_and(|b| b.bytes_per_sec() == 0),
        ),
        ("io.vm.iops", io.vm.iops == Some(0)),
        (
            "io.offline_group.bandwidth",
            io.offline_group
                .bandwidth
                .is_some_and(|b| b.bytes_per_sec() == 0),
        ),
        ("io.offline_group.iops", io.offline_group.iops == Some(0)),
    ] {
        if zero {
            c.invalid(
                path,
                0,
                "a zero limit stops all IO; use pause for that",
                "above 0, or null for unlimited",
            );
        }
    }
    let q = &io.squeeze;
    c.positive_percent("io.squeeze.step_down", q.step_down);
    c.positive_percent("io.squeeze.step_up", q.step_up);
    if let Some(b) = io.vm.bandwidth
        && q.min_vm_bandwidth > b
    {
        c.conflict(
            "io.squeeze.min_vm_bandwidth",
            q.min_vm_bandwidth,
            "io.vm.bandwidth",
            format!(
                "`{}` is above io.vm.bandwidth (`{b}`): the floor must not exceed the limit",
                q.min_vm_bandwidth
            ),
        );
    }
    if let Some(n) = io.vm.iops
        && q.min_vm_iops > n
    {
        c.conflict(
            "io.squeeze.min_vm_iops",
            q.min_vm_iops,
            "io.vm.iops",
            format!(
                "`{}` is above io.vm.iops (`{n}`): the floor must not exceed the limit",
                q.min_vm_iops
            ),
        );
    }
    if let Some(b) = io.offline_group.bandwidth
        && q.min_group_bandwidth > b
    {
        c.conflict("io.squeeze.min_group_bandwidth", q.min_group_bandwidth, "io.offline_group.bandwidth",
            format!("`{}` is above io.offline_group.bandwidth (`{b}`): the floor must not exceed the limit", q.min_group_bandwidth));
    }
    if let Some(n) = io.offline_group.iops
        && q.min_group_iops > n
    {
        c.conflict(
            "io.squeeze.min_group_iops",
            q.min_group_iops,
            "io.offline_group.iops",
            format!(
                "`{}` is above io.offline_group.iops (`{n}`): the floor must not exceed the limit",
                q.min_group_iops
            ),
        );
    }

    // Interference
    let i = &p.interference;
    c.threshold("interference.run_delay", &i.run_delay);
    c.psi("interference.psi.cpu_some", &i.psi.cpu_some);
    c.psi("interference.psi.memory_some", &i.psi.memory_some);
    c.psi("interference.psi.memory_full", &i.psi.memory_full);
    c.psi("interference.psi.io_some", &i.psi.io_some);
    c.psi("interference.psi.io_full", &i.psi.io_full);
    c.threshold("interference.sli", &i.sli);
    if let Some(t) = &i.sli
        && !(t.low.is_finite() && t.low > 0.0 && t.high.is_finite())
    {
        c.invalid(
            "interference.sli.low",
            t.low,
            "SLI thresholds are ratios of p99 to target",
            "0 < low < high",
        );
    }
    c.threshold("interference.io_latency", &i.io_latency);
    c.threshold("interference.wakeup_delay", &i.wakeup_delay);
    c.threshold("interference.io_utilisation", &i.io_utilisation);

    // Timing
    let t = &p.timing;
    for (path, d) in [
        ("timing.release_cooldown", t.release_cooldown),
        ("timing.resume_after", t.resume_after),
    ] {
        if d.is_zero() {
            c.invalid(
                path,
                "0s",
                "must be above zero, or the offline side could oscillate every tick",
                "a duration > 0",
            );
        }
    }

    // Eviction
    let e = &p.eviction;
    for (idx, key) in e.order.iter().enumerate() {
        if e.order[..idx].contains(key) {
            let name = eviction_key_name(*key);
            c.invalid(
                &format!("eviction.order[{idx}]"),
                name,
                "each sort key may appear once",
                "distinct keys",
            );
        }
    }
    use super::EvictionKey::{OldestFirst, YoungestFirst};
    if let (Some(y), Some(o)) = (
        e.order.iter().position(|k| *k == YoungestFirst),
        e.order.iter().position(|k| *k == OldestFirst),
    ) {
        let (later, earlier) = if y > o { (y, o) } else { (o, y) };
        c.conflict(
            &format!("eviction.order[{later}]"),
            eviction_key_name(e.order[later]),
            &format!("eviction.order[{earlier}]"),
            "`youngest_first` and `oldest_first` contradict each other: keep one".to_owned(),
        );
    }
    if e.max_per_step == 0 {
        c.invalid(
            "eviction.max_per_step",
            0,
            "zero would never evict, even at the memory limit",
            "1 or more",
        );
    }

    // Scoring
    let sc = &p.scoring;
    let comps = &sc.components;
    c.weight(
        "scoring.components.run_delay.weight",
        comps.run_delay.weight,
    );
    c.weight("scoring.components.psi.weight", comps.psi.weight);
    c.weight("scoring.components.sli.weight", comps.sli.weight);
    let total = comps.run_delay.weight + comps.psi.weight + comps.sli.weight;
    if total.is_finite() && total <= 0.0 {
        c.invalid(
            "scoring.components",
            total,
            "at least one component needs a weight above 0",
            "weights summing above 0",
        );
    }
    for (path, zero, full) in [
        (
            "scoring.components.run_delay",
            comps.run_delay.zero.fraction(),
            comps.run_delay.full.fraction(),
        ),
        (
            "scoring.components.psi",
            comps.psi.zero.fraction(),
            comps.psi.full.fraction(),
        ),
    ] {
        if zero >= full {
            let (z, f) = if path.ends_with("psi") {
                (comps.psi.zero, comps.psi.full)
            } else {
                (comps.run_delay.zero, comps.run_delay.full)
            };
            c.conflict(
                &format!("{path}.zero"),
                z,
                &format!("{path}.full"),
                format!("`zero` (`{z}`) must be below `full` (`{f}`)"),
            );
        }
    }
    let sli = comps.sli;
    if !(sli.zero.is_finite() && sli.full.is_finite() && sli.zero >= 0.0) {
        c.invalid(
            "scoring.components.sli.zero",
            sli.zero,
            "SLI levels are ratios of p99 to target",
            "0 <= zero < full",
        );
    } else if sli.zero >= sli.full {
        c.conflict(
            "scoring.components.sli.zero",
            sli.zero,
            "scoring.components.sli.full",
            format!(
                "`zero` (`{}`) must be below `full` (`{}`)",
                sli.zero, sli.full
            ),
        );
    }
    if !(sc.peak_share.is_finite() && (0.0..=1.0).contains(&sc.peak_share)) {
        c.invalid(
            "scoring.peak_share",
            sc.peak_share,
            "the worst component's share of the score is a fraction",
            "0 <= value <= 1",
        );
    }
    c.score("scoring.filter.refuse_above", sc.filter.refuse_above);
    c.score("scoring.filter.accept_below", sc.filter.accept_below);
    if sc.filter.accept_below >= sc.filter.refuse_above {
        c.conflict("scoring.filter.accept_below", sc.filter.accept_below, "scoring.filter.refuse_above",
            format!("`{}` must be below scoring.filter.refuse_above (`{}`) so the verdict does not flap", sc.filter.accept_below, sc.filter.refuse_above));
    }
    c.weight(
        "scoring.prioritize.interference",
        sc.prioritize.interference,
    );
    c.weight("scoring.prioritize.reclaimable", sc.prioritize.reclaimable);
    if sc.prioritize.interference + sc.prioritize.reclaimable <= 0.0 {
        c.invalid(
            "scoring.prioritize",
            0,
            "at least one weight must be above 0",
            "weights summing above 0",
        );
    }

    c.out
}

fn eviction_key_name(k: super::EvictionKey) -> &'static str {
    use super::EvictionKey as K;
    match k {
        K::EvictionRank => "eviction_rank",
        K::Priority => "priority",
        K::YoungestFirst => "youngest_first",
        K::OldestFirst => "oldest_first",
        K::LargestMemoryFirst => "largest_memory_first",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EvictionKey;

    #[test]
    fn the_default_policy_is_valid() {
        assert_eq!(validate(&Policy::default()), vec![]);
    }

    #[test]
    fn stop_must_be_below_evict() {
        let mut p = Policy::default();
        p.memory.stop_at = p.memory.evict_at;
        let v = validate(&p);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "memory.stop_at");
        assert_eq!(v[0].related.as_deref(), Some("memory.evict_at"));
    }

    #[test]
    fn contradictory_eviction_keys_are_refused() {
        let mut p = Policy::default();
        p.eviction.order = vec![
            EvictionKey::OldestFirst,
            EvictionKey::Priority,
            EvictionKey::YoungestFirst,
        ];
        let v = validate(&p);
        assert_eq!(v[0].path, "eviction.order[2]");
    }
}
