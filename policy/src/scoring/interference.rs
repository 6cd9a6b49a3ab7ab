//! The interference score: how much the online services on a node suffer, 0 (not at all) to
//! 100 (severely), from signals that need no change to the applications.

use super::params::InterferenceParams;

/// Raw interference signals of one node, as the agent's monitors measure them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct InterferenceSignals {
    /// Run-queue delay of online tasks: milliseconds spent waiting for a CPU per second of wall
    /// time (`/proc/<pid>/schedstat`, second field), the worst online service.
    pub run_delay_ms_per_s: f64,
    /// PSI `some` stall in milliseconds per second (from the `total` counters; 10 ms/s = 1 %),
    /// the worst of cpu, memory and io.
    pub psi_ms_per_s: f64,
    /// Observed online p99 divided by its SLO target (1.0 = at the target), the worst service
    /// with an SLO; `None` when no online service on the node has one.
    pub sli_ratio: Option<f64>,
}

/// The interference score and the normalised components it was made of, each 0..100.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct InterferenceScore {
    /// The combined score, 0..100.
    pub score: f64,
    /// Run-delay component, 0..100.
    pub run_delay: f64,
    /// PSI component, 0..100.
    pub psi: f64,
    /// SLI component, 0..100 (0 when the node has no SLI).
    pub sli: f64,
}

/// Combines the signals into a score 0..100: each signal is normalised through its ramp, then
/// `score = (1 − peak_share) × weighted mean + peak_share × worst component`. A component with
/// no measurement (no SLI) is left out of both terms and the weights of the others are rescaled.
/// The score never decreases when any signal rises. Callers that score often with the same
/// parameters can use [`PreparedInterference`] (the same scores, bit for bit).
#[must_use]
pub fn interference_score(
    signals: &InterferenceSignals,
    params: &InterferenceParams,
) -> InterferenceScore {
    PreparedInterference::new(params).score(signals)
}

/// [`InterferenceParams`] with what [`interference_score`] derives from them alone (the weights
/// as used, the peak share) worked out once: for a caller that scores at every tick with the
/// same parameters (the simulator). [`PreparedInterference::score`] gives the very scores of
/// [`interference_score`], bit for bit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PreparedInterference {
    params: InterferenceParams,
    /// Run-delay weight as used (0 if not finite and positive).
    wr: f64,
    /// PSI weight as used.
    wp: f64,
    /// SLI weight as used when the node has an SLI.
    ws: f64,
    /// Peak share within 0..1 (0 if NaN).
    share: f64,
}

impl PreparedInterference {
    /// Works out the constants of `params`.
    #[must_use]
    pub fn new(params: &InterferenceParams) -> Self {
        let w = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
        Self {
            params: *params,
            wr: w(params.weights.run_delay),
            wp: w(params.weights.psi),
            ws: w(params.weights.sli),
            share: if params.peak_share.is_nan() {
                0.0
            } else {
                params.peak_share.clamp(0.0, 1.0)
            },
        }
    }

    /// The parameters it was made from.
    #[must_use]
    pub const fn params(&self) -> &InterferenceParams {
        &self.params
    }

    /// The score of `signals` (see [`interference_score`]).
    #[must_use]
    pub fn score(&self, signals: &InterferenceSignals) -> InterferenceScore {
        let params = &self.params;
        let run_delay = params.run_delay.normalise(signals.run_delay_ms_per_s);
        let psi = params.psi.normalise(signals.psi_ms_per_s);
        let sli = signals.sli_ratio.map(|r| params.sli.normalise(r));

        let (wr, wp, ws) = (self.wr, self.wp, sli.map_or(0.0, |_| self.ws));
        let sli_value = sli.unwrap_or(0.0);
        let total = wr + wp + ws;
        let mean = if total > 0.0 {
            (wr * run_delay + wp * psi + ws * sli_value) / total
        } else {
            0.0
        };
        // The peak only considers weighted components, so a weight of 0 really switches one off.
        let mut peak: f64 = 0.0;
        if wr > 0.0 {
            peak = peak.max(run_delay);
        }
        if wp > 0.0 {
            peak = peak.max(psi);
        }
        if ws > 0.0 {
            peak = peak.max(sli_value);
        }
        let share = self.share;
        let score = ((1.0 - share) * mean + share * peak).clamp(0.0, 100.0);
        InterferenceScore {
            score,
            run_delay,
            psi,
            sli: sli_value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::params::InterferenceWeights;
    use proptest::prelude::*;

    fn signals(rd: f64, psi: f64, sli: Option<f64>) -> InterferenceSignals {
        InterferenceSignals {
            run_delay_ms_per_s: rd,
            psi_ms_per_s: psi,
            sli_ratio: sli,
        }
    }

    #[test]
    fn calm_node_scores_zero_and_saturated_node_scores_hundred() {
        let p = InterferenceParams::default();
        assert_eq!(
            interference_score(&signals(0.0, 0.0, Some(0.5)), &p).score,
            0.0
        );
        assert_eq!(
            interference_score(&signals(1e9, 1_000.0, Some(9.0)), &p).score,
            100.0
        );
    }

    #[test]
    fn an_slo_breach_alone_exceeds_the_default_refusal_threshold() {
        let p = InterferenceParams::default();
        let s = interference_score(&signals(0.0, 0.0, Some(1.5)), &p);
        assert_eq!(s.sli, 100.0);
        // 0.4 × (0.3 × 100) + 0.6 × 100 = 72.
        assert!((s.score - 72.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn missing_sli_redistributes_its_weight() {
        let p = InterferenceParams {
            peak_share: 0.0,
            ..InterferenceParams::default()
        };
        // run delay 25.5 ms/s → 50; psi 0 → 0; weights 0.4/0.3 → mean 0.4 × 50 / 0.7.
        let s = interference_score(&signals(25.5, 0.0, None), &p);
        assert!((s.run_delay - 50.0).abs() < 1e-9);
        assert!((s.score - 20.0 / 0.7).abs() < 1e-9, "{s:?}");
        assert_eq!(s.sli, 0.0);
    }

    #[test]
    fn zero_weights_switch_components_off() {
        let p = InterferenceParams {
            weights: InterferenceWeights {
                run_delay: 0.0,
                psi: 1.0,
                sli: 0.0,
            },
            ..InterferenceParams::default()
        };
        let s = interference_score(&signals(1e9, 0.0, Some(9.0)), &p);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.run_delay, 100.0);
        let none = InterferenceParams {
            weights: InterferenceWeights {
                run_delay: 0.0,
                psi: f64::NAN,
                sli: -1.0,
            },
            ..InterferenceParams::default()
        };
        assert_eq!(
            interference_score(&signals(1e9, 1_000.0, Some(9.0)), &none).score,
            0.0
        );
    }

    #[test]
    fn nan_signals_count_as_no_interference() {
        let p = InterferenceParams::default();
        let s = interference_score(&signals(f64::NAN, f64::NAN, Some(f64::NAN)), &p);
        assert_eq!(s.score, 0.0);
    }

    fn any_signal() -> impl Strategy<Value = f64> {
        prop_oneof![
            -10.0f64..1_200.0,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY)
        ]
    }

    proptest! {
        #[test]
        fn score_and_components_stay_in_bounds(
            rd in any_signal(), psi in any_signal(), sli in proptest::option::of(any_signal()),
            wr in -1.0f64..2.0, wp in -1.0f64..2.0, ws in -1.0f64..2.0, share in -0.5f64..1.5,
        ) {
            let p = InterferenceParams {
                weights: InterferenceWeights { run_delay: wr, psi: wp, sli: ws },
                peak_share: share,
                ..InterferenceParams::default()
            };
            let s = interference_score(&signals(rd, psi, sli), &p);
            for v in [s.score, s.run_delay, s.psi, s.sli] {
                prop_assert!((0.0..=100.0).contains(&v), "{s:?}");
            }
        }

        #[test]
        fn score_never_falls_when_a_signal_rises(
            rd in 0.0f64..100.0, psi in 0.0f64..300.0, sli in 0.0f64..2.0,
            d in 0.0f64..50.0, which in 0usize..3,
        ) {
            let p = InterferenceParams::default();
            let base = interference_score(&signals(rd, psi, Some(sli)), &p).score;
            let raised = match which {
                0 => signals(rd + d, psi, Some(sli)),
                1 => signals(rd, psi + d, Some(sli)),
                _ => signals(rd, psi, Some(sli + d)),
            };
            prop_assert!(interference_score(&raised, &p).score >= base - 1e-9);
        }
    }
}
