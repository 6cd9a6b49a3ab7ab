//! Hysteresis and cool-downs: squeeze fast, release slowly.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::Checker;
use crate::units::{duration, option_duration};

/// Timing of the QoS loop's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// Least time between two squeeze steps of the same stepwise knob (vCPU quota, IO limits),
    /// so a step can take effect before the next. The group CPU quota follows its target at
    /// every loop tick regardless.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub squeeze_cooldown: Duration,
    /// Every signal of a resource must stay below its `low` threshold this long before the
    /// first release step.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub release_after: Duration,
    /// Least time between two release steps of the same knob.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub release_cooldown: Duration,
    /// Interference above `high` with every VM already at its floor for this long pauses the
    /// lowest-ranked VM; `null` never pauses.
    #[serde(with = "option_duration")]
    #[schemars(with = "Option<duration::Schema>")]
    pub pause_after: Option<Duration>,
    /// Interference still above `high` this long after the last pause evicts a VM (paused ones
    /// first); `null` never evicts for interference (memory thresholds still evict).
    #[serde(with = "option_duration")]
    #[schemars(with = "Option<duration::Schema>")]
    pub evict_after: Option<Duration>,
    /// Signals below `low` this long resume a paused VM (one per release step).
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub resume_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            squeeze_cooldown: Duration::from_millis(100),
            release_after: Duration::from_secs(5),
            release_cooldown: Duration::from_secs(1),
            pause_after: Some(Duration::from_secs(2)),
            evict_after: Some(Duration::from_secs(30)),
            resume_after: Duration::from_secs(10),
        }
    }
}

impl Timing {
    /// Reports this section's violations to `c` (the ranges and cross-field rules its types
    /// cannot express).
    pub(super) fn check(&self, c: &mut Checker) {
        let t = self;
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
    }
}
