//! Node scoring for placement: the interference score (0–100) from its components, the filter
//! verdict with hysteresis, and the headroom behind reclaimable capacity. Implemented in
//! `colo-policy`'s scoring module; the scheduler, the agent's reports and the simulator share it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::qos::pct;
use super::validate::Checker;
use crate::units::{Percent, StallRate};

/// Placement scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    /// The interference score's components: each maps its signal linearly from `zero` (score 0)
    /// to `full` (score 100).
    pub components: ScoringComponents,
    /// Share (0–1) of the interference score taken by the worst weighted component rather than
    /// the weighted mean of the components that have data: score = (1 − peak_share) × mean +
    /// peak_share × worst. Keeps one severe signal (an SLO breach) from being diluted by calm
    /// ones; with the defaults any single component at `full` refuses batch work on its own.
    /// 0 gives the plain weighted mean.
    pub peak_share: f64,
    /// When a node refuses batch work.
    pub filter: FilterThresholds,
    /// Capacity kept back from "reclaimable" (reclaimable = capacity − online usage − headroom).
    pub headroom: ScoreHeadroom,
    /// How prioritize ranks the nodes that pass the filter.
    pub prioritize: Prioritize,
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            components: ScoringComponents::default(),
            peak_share: 0.6,
            filter: FilterThresholds::default(),
            headroom: ScoreHeadroom::default(),
            prioritize: Prioritize::default(),
        }
    }
}

/// The components of the interference score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringComponents {
    /// Run-queue delay of online tasks (worst online service).
    pub run_delay: StallComponent,
    /// PSI `some` stall (worst of cpu, memory, io; worst online service or system-wide).
    pub psi: StallComponent,
    /// SLI p99 / target (worst online service with an SLO).
    pub sli: RatioComponent,
}

impl Default for ScoringComponents {
    fn default() -> Self {
        Self {
            run_delay: StallComponent {
                weight: 0.4,
                zero: StallRate::from_millis_per_sec(1),
                full: StallRate::from_millis_per_sec(50),
            },
            psi: StallComponent {
                weight: 0.3,
                zero: StallRate::from_millis_per_sec(10),
                full: StallRate::from_millis_per_sec(200),
            },
            sli: RatioComponent {
                weight: 0.3,
                zero: 0.8,
                full: 1.5,
            },
        }
    }
}

/// A component measured as stall time per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StallComponent {
    /// Relative weight (≥ 0; weights need not sum to 1).
    pub weight: f64,
    /// At or below this the component scores 0.
    pub zero: StallRate,
    /// At or above this the component scores 100; must be above `zero`.
    pub full: StallRate,
}

/// A component measured as a ratio (SLI p99 / target).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatioComponent {
    /// Relative weight (≥ 0).
    pub weight: f64,
    /// At or below this ratio the component scores 0.
    pub zero: f64,
    /// At or above this ratio the component scores 100; must be above `zero`.
    pub full: f64,
}

/// Filter verdict with hysteresis: a node refuses batch work once its score exceeds
/// `refuse_above` and accepts again only once it falls below `accept_below`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FilterThresholds {
    /// Score (0–100) above which the node refuses batch work.
    pub refuse_above: f64,
    /// Score (0–100) below which a refusing node accepts again; must be below `refuse_above`.
    pub accept_below: f64,
}

impl Default for FilterThresholds {
    fn default() -> Self {
        Self {
            refuse_above: 70.0,
            accept_below: 50.0,
        }
    }
}

/// Headroom behind reclaimable capacity, as shares of node capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreHeadroom {
    /// CPU kept back.
    pub cpu: Percent,
    /// Memory kept back.
    pub memory: Percent,
}

impl Default for ScoreHeadroom {
    fn default() -> Self {
        Self {
            cpu: pct(10.0),
            memory: pct(10.0),
        }
    }
}

/// Weights of the prioritize score (0–10 in the extender): low interference and much
/// reclaimable capacity both rank a node higher.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Prioritize {
    /// Weight of (100 − interference score).
    pub interference: f64,
    /// Weight of the batch capacity left on the node after placing the pod (reclaimable minus
    /// batch usage minus the request), the scarcer of CPU and memory, as a share of capacity.
    pub reclaimable: f64,
}

impl Default for Prioritize {
    fn default() -> Self {
        Self {
            interference: 0.6,
            reclaimable: 0.4,
        }
    }
}

impl Scoring {
    /// Reports this section's violations to `c` (the ranges and cross-field rules its types
    /// cannot express).
    pub(super) fn check(&self, c: &mut Checker) {
        let sc = self;
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
            c.conflict(
                "scoring.filter.accept_below",
                sc.filter.accept_below,
                "scoring.filter.refuse_above",
                format!(
                    "`{}` must be below scoring.filter.refuse_above (`{}`) so the verdict does not flap",
                    sc.filter.accept_below, sc.filter.refuse_above
                ),
            );
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
    }
}
