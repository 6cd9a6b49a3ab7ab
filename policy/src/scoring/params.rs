//! Tunables of node scoring, with the defaults colo ships.
//!
//! These are plain `Copy` structs so every caller (agent, scheduler, simulator) can hold them by
//! value in its hot loop. The functions that use them never panic, whatever the values: a ramp
//! whose ends coincide is a step, weights that sum to zero give a zero score.

/// A linear ramp mapping a raw signal to 0..100: at or below `good` it is 0, at or above `bad`
/// it is 100, in between it rises linearly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    /// Raw value at and below which the component is 0 (no interference).
    pub good: f64,
    /// Raw value at and above which the component is 100 (severe interference).
    pub bad: f64,
}

impl Ramp {
    /// Maps `raw` to 0..100. NaN maps to 0 (no evidence of interference); a ramp with
    /// `bad <= good` is a step at `good`.
    #[must_use]
    pub fn normalise(self, raw: f64) -> f64 {
        if raw.is_nan() || raw <= self.good {
            return 0.0;
        }
        if raw >= self.bad || self.bad <= self.good {
            return 100.0;
        }
        let x = (raw - self.good) / (self.bad - self.good) * 100.0;
        x.clamp(0.0, 100.0)
    }
}

/// Relative weights of the interference components. Only their ratios matter; a component
/// without a measurement (no SLI configured) drops out and the others share its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterferenceWeights {
    /// Weight of the online run-queue delay component.
    pub run_delay: f64,
    /// Weight of the PSI component.
    pub psi: f64,
    /// Weight of the SLI component.
    pub sli: f64,
}

/// How raw interference signals become the 0..100 interference score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterferenceParams {
    /// Online tasks' run-queue delay, in milliseconds of waiting per second of wall time per
    /// online task (from `/proc/<pid>/schedstat`). Default 5 → 50 ms/s.
    pub run_delay: Ramp,
    /// Pressure stall, the `some avg10` percentage (worst of cpu, memory, io). Default 5 → 40 %.
    pub psi: Ramp,
    /// Online latency over its SLO target (1.0 = exactly at the target). Default 0.8 → 1.2.
    pub sli: Ramp,
    /// Component weights. Default run delay 0.3, PSI 0.3, SLI 0.4.
    pub weights: InterferenceWeights,
    /// Share of the score taken by the worst single component rather than the weighted mean,
    /// 0..1, so one severe signal (an SLO breach) is not diluted by two calm ones. Default 0.5.
    pub peak_share: f64,
}

impl Default for InterferenceParams {
    fn default() -> Self {
        Self {
            run_delay: Ramp {
                good: 5.0,
                bad: 50.0,
            },
            psi: Ramp {
                good: 5.0,
                bad: 40.0,
            },
            sli: Ramp {
                good: 0.8,
                bad: 1.2,
            },
            weights: InterferenceWeights {
                run_delay: 0.3,
                psi: 0.3,
                sli: 0.4,
            },
            peak_share: 0.5,
        }
    }
}

/// The share of capacity kept free for online bursts: it is never offered to batch work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadroomParams {
    /// Percent of CPU capacity held back, 0..100. Default 10.
    pub cpu_percent: f64,
    /// Percent of memory capacity held back, 0..100. Default 10.
    pub memory_percent: f64,
}

impl Default for HeadroomParams {
    fn default() -> Self {
        Self {
            cpu_percent: 10.0,
            memory_percent: 10.0,
        }
    }
}

/// When a node stops taking batch work, with hysteresis so it does not flap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdmissionParams {
    /// An accepting node starts refusing batch work when its interference score reaches this
    /// (0..100). Default 70.
    pub refuse_at: f64,
    /// A refusing node accepts batch work again only once its score is at or below this. Keep it
    /// below `refuse_at`; the gap is the hysteresis band. Default 50.
    pub accept_at: f64,
}

impl Default for AdmissionParams {
    fn default() -> Self {
        Self {
            refuse_at: 70.0,
            accept_at: 50.0,
        }
    }
}

/// How the 0..10 node score for one batch request is put together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeScoreParams {
    /// Weight of the capacity left for batch after placing the request (dominant resource share
    /// of capacity). Default 0.5.
    pub free_weight: f64,
    /// Weight of quietness (100 − interference score). Default 0.5.
    pub quiet_weight: f64,
}

impl Default for NodeScoreParams {
    fn default() -> Self {
        Self {
            free_weight: 0.5,
            quiet_weight: 0.5,
        }
    }
}

/// Every scoring tunable in one value.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ScoringParams {
    /// Raw signals → interference score.
    pub interference: InterferenceParams,
    /// Capacity held back from batch work.
    pub headroom: HeadroomParams,
    /// Interference score → take batch work or not.
    pub admission: AdmissionParams,
    /// Node state → 0..10 placement score.
    pub node_score: NodeScoreParams,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_maps_ends_and_middle() {
        let r = Ramp {
            good: 10.0,
            bad: 30.0,
        };
        assert_eq!(r.normalise(0.0), 0.0);
        assert_eq!(r.normalise(10.0), 0.0);
        assert_eq!(r.normalise(20.0), 50.0);
        assert_eq!(r.normalise(30.0), 100.0);
        assert_eq!(r.normalise(1e300), 100.0);
        assert_eq!(r.normalise(f64::NAN), 0.0);
        assert_eq!(r.normalise(f64::INFINITY), 100.0);
        assert_eq!(r.normalise(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn degenerate_ramp_is_a_step() {
        let r = Ramp {
            good: 5.0,
            bad: 5.0,
        };
        assert_eq!(r.normalise(5.0), 0.0);
        assert_eq!(r.normalise(5.0001), 100.0);
        let inverted = Ramp {
            good: 5.0,
            bad: 1.0,
        };
        assert_eq!(inverted.normalise(4.0), 0.0);
        assert_eq!(inverted.normalise(6.0), 100.0);
    }
}
