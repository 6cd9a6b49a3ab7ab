//! Checks that need more than one field, or a range the type alone cannot express. Each
//! violation names the field path; the loader turns paths into file:line:column.

use super::{Policy, Threshold};
use crate::error::ErrorKind;
use crate::units::{Percent, StallRate};

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

/// Collects the violations every section's `check` finds, in order.
#[derive(Default)]
pub(super) struct Checker {
    out: Vec<Violation>,
}

impl Checker {
    pub(super) fn invalid(
        &mut self,
        path: &str,
        value: impl ToString,
        message: &str,
        allowed: &str,
    ) {
        self.out.push(Violation {
            path: path.to_owned(),
            related: None,
            kind: ErrorKind::InvalidValue,
            message: format!("invalid value `{}`: {message}", value.to_string()),
            value: value.to_string(),
            allowed: Some(allowed.to_owned()),
        });
    }

    pub(super) fn conflict(
        &mut self,
        path: &str,
        value: impl ToString,
        related: &str,
        message: String,
    ) {
        self.out.push(Violation {
            path: path.to_owned(),
            related: Some(related.to_owned()),
            kind: ErrorKind::Conflict,
            message,
            value: value.to_string(),
            allowed: None,
        });
    }

    pub(super) fn positive_percent(&mut self, path: &str, p: Percent) {
        if p.value() <= 0.0 {
            self.invalid(
                path,
                p,
                "must be above 0%, or the step does nothing",
                "0% < value <= 100%",
            );
        }
    }

    pub(super) fn threshold<T: PartialOrd + std::fmt::Display + Copy>(
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

    pub(super) fn psi(&mut self, path: &str, t: &Option<Threshold<StallRate>>) {
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

    pub(super) fn weight(&mut self, path: &str, w: f64) {
        if !(w.is_finite() && w >= 0.0) {
            self.invalid(
                path,
                w,
                "weights must be finite and not negative",
                "a number >= 0",
            );
        }
    }

    pub(super) fn score(&mut self, path: &str, s: f64) {
        if !(s.is_finite() && (0.0..=100.0).contains(&s)) {
            self.invalid(path, s, "scores range from 0 to 100", "0 <= value <= 100");
        }
    }
}

/// Every violation in `p`, in schema order.
pub(crate) fn validate(p: &Policy) -> Vec<Violation> {
    let mut c = Checker::default();
    p.cpu.check(&mut c);
    p.memory.check(&mut c);
    p.io.check(&mut c);
    p.interference.check(&mut c);
    p.timing.check(&mut c);
    p.eviction.check(&mut c);
    p.scoring.check(&mut c);
    c.out
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
