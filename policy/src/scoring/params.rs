//! Tunables of node scoring, with the defaults colo ships.
//!
//! These are plain `Copy` structs so every caller (agent, scheduler, simulator) can hold them by
//! value in its hot loop. The functions that use them never panic, whatever the values: a ramp
//! whose ends coincide is a step, weights that sum to zero give a zero score.

/// A linear ramp mapping a raw signal to 0..100: at or below `zero` it is 0, at or above `full`
/// it is 100, in between it rises linearly (policy YAML `scoring.components.*.{zero, full}`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    /// Raw value at and below which the component is 0 (no interference).
    pub zero: f64,
    /// Raw value at and above which the component is 100 (severe interference).
    pub full: f64,
}

impl Ramp {
    /// Maps `raw` to 0..100. NaN maps to 0 (no evidence of interference); a ramp with
    /// `full <= zero` is a step at `zero`.
    #[must_use]
    pub fn normalise(self, raw: f64) -> f64 {
        if raw.is_nan() || raw <= self.zero {
            return 0.0;
        }
        if raw >= self.full || self.full <= self.zero {
            return 100.0;
        }
        let x = (raw - self.zero) / (self.full - self.zero) * 100.0;
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

/// How raw interference signals become the 0..100 interference score. The defaults are those of
/// the policy YAML (`colo-config`'s `Scoring`); build the value from a loaded policy with
/// `ScoringParams::from(&policy.scoring)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterferenceParams {
    /// Online tasks' run-queue delay, milliseconds of waiting per second (worst online
    /// service). Default 1 → 50 ms/s.
    pub run_delay: Ramp,
    /// PSI `some` stall, milliseconds per second (worst of cpu, memory, io). Default
    /// 10 → 200 ms/s (1 % → 20 %).
    pub psi: Ramp,
    /// Online p99 over its SLO target (1.0 = at the target; worst service with an SLO).
    /// Default 0.8 → 1.5.
    pub sli: Ramp,
    /// Component weights. Default run delay 0.4, PSI 0.3, SLI 0.3.
    pub weights: InterferenceWeights,
    /// Share of the score taken by the worst weighted component rather than the weighted mean,
    /// 0..1, so one severe signal (an SLO breach) is not diluted by calm ones. Default 0.6.
    pub peak_share: f64,
}

impl Default for InterferenceParams {
    fn default() -> Self {
        Self {
            run_delay: Ramp {
                zero: 1.0,
                full: 50.0,
            },
            psi: Ramp {
                zero: 10.0,
                full: 200.0,
            },
            sli: Ramp {
                zero: 0.8,
                full: 1.5,
            },
            weights: InterferenceWeights {
                run_delay: 0.4,
                psi: 0.3,
                sli: 0.3,
            },
            peak_share: 0.6,
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
    /// An accepting node starts refusing batch work once its interference score exceeds this
    /// (0..100). Default 70.
    pub refuse_above: f64,
    /// A refusing node accepts batch work again only once its score falls below this. Keep it
    /// below `refuse_above`; the gap is the hysteresis band. Default 50.
    pub accept_below: f64,
}

impl Default for AdmissionParams {
    fn default() -> Self {
        Self {
            refuse_above: 70.0,
            accept_below: 50.0,
        }
    }
}

/// How the 0..10 node score for one batch request is put together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeScoreParams {
    /// Weight of quietness (100 − interference score). Default 0.6.
    pub interference_weight: f64,
    /// Weight of the batch capacity left after placing the request (the scarcer of CPU and
    /// memory, as a share of capacity). Default 0.4.
    pub reclaimable_weight: f64,
}

impl Default for NodeScoreParams {
    fn default() -> Self {
        Self {
            interference_weight: 0.6,
            reclaimable_weight: 0.4,
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

impl From<&colo_config::policy::Scoring> for ScoringParams {
    fn from(s: &colo_config::policy::Scoring) -> Self {
        let ms_per_s = |r: colo_config::units::StallRate| r.fraction() * 1_000.0;
        let c = &s.components;
        Self {
            interference: InterferenceParams {
                run_delay: Ramp {
                    zero: ms_per_s(c.run_delay.zero),
                    full: ms_per_s(c.run_delay.full),
                },
                psi: Ramp {
                    zero: ms_per_s(c.psi.zero),
                    full: ms_per_s(c.psi.full),
                },
                sli: Ramp {
                    zero: c.sli.zero,
                    full: c.sli.full,
                },
                weights: InterferenceWeights {
                    run_delay: c.run_delay.weight,
                    psi: c.psi.weight,
                    sli: c.sli.weight,
                },
                peak_share: s.peak_share,
            },
            headroom: HeadroomParams {
                cpu_percent: s.headroom.cpu.value(),
                memory_percent: s.headroom.memory.value(),
            },
            admission: AdmissionParams {
                refuse_above: s.filter.refuse_above,
                accept_below: s.filter.accept_below,
            },
            node_score: NodeScoreParams {
                interference_weight: s.prioritize.interference,
                reclaimable_weight: s.prioritize.reclaimable,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_maps_ends_and_middle() {
        let r = Ramp {
            zero: 10.0,
            full: 30.0,
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
            zero: 5.0,
            full: 5.0,
        };
        assert_eq!(r.normalise(5.0), 0.0);
        assert_eq!(r.normalise(5.0001), 100.0);
        let inverted = Ramp {
            zero: 5.0,
            full: 1.0,
        };
        assert_eq!(inverted.normalise(4.0), 0.0);
        assert_eq!(inverted.normalise(6.0), 100.0);
    }

    #[test]
    fn defaults_are_the_policy_yamls() {
        let from_yaml = ScoringParams::from(&colo_config::policy::Scoring::default());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let d = ScoringParams::default();
        // Stall rates go through nanoseconds: compare ramps with a tolerance.
        for (a, b) in [
            (from_yaml.interference.run_delay, d.interference.run_delay),
            (from_yaml.interference.psi, d.interference.psi),
        ] {
            assert!(
                close(a.zero, b.zero) && close(a.full, b.full),
                "{a:?} vs {b:?}"
            );
        }
        let exact = ScoringParams {
            interference: InterferenceParams {
                run_delay: d.interference.run_delay,
                psi: d.interference.psi,
                ..from_yaml.interference
            },
            ..from_yaml
        };
        assert_eq!(exact, d);
    }
}
