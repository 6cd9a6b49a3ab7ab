//! Placement answers for one batch request on one node: may it go there (filter, with a reason),
//! and how good a place is it (score 0..10, Kubernetes' `MaxExtenderPriority`).

use std::fmt;

use super::params::{AdmissionParams, NodeScoreParams};
use super::resources::Resources;

/// The highest node score, as Kubernetes' scheduler extender API defines it
/// (`MaxExtenderPriority`); the lowest is 0.
pub const MAX_NODE_SCORE: u8 = 10;

/// What placement needs to know about a node.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeState {
    /// The node's capacity.
    pub capacity: Resources,
    /// The batch budget: capacity − online usage − headroom (see
    /// [`reclaimable`](super::reclaimable)).
    pub reclaimable: Resources,
    /// What running batch work uses now (it holds part of the budget).
    pub offline_usage: Resources,
    /// Interference score 0..100 (NaN counts as 100: an unknown state is not a quiet one).
    pub interference: f64,
}

impl NodeState {
    /// The part of the batch budget that running batch work does not use yet.
    #[must_use]
    pub const fn available_for_batch(&self) -> Resources {
        self.reclaimable.saturating_sub(self.offline_usage)
    }

    fn interference_or_worst(&self) -> f64 {
        if self.interference.is_nan() {
            100.0
        } else {
            self.interference.clamp(0.0, 100.0)
        }
    }
}

/// Whether a node takes batch work at all. The caller keeps the last value per node and hands
/// it back to [`batch_admission`], which is how hysteresis works without a clock. A node never
/// seen before starts [`Admission::Accepting`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Admission {
    /// The node takes batch work.
    #[default]
    Accepting,
    /// The node's online services suffer; it takes no more batch work until its interference
    /// score falls below `accept_below`.
    Refusing,
}

/// The next admission state of a node whose interference score is now `score`: an accepting
/// node refuses once the score exceeds `refuse_above`; a refusing one accepts again only once it
/// is below `accept_below` (and not above `refuse_above`). A NaN score refuses.
#[must_use]
pub fn batch_admission(score: f64, previous: Admission, params: &AdmissionParams) -> Admission {
    if score.is_nan() {
        return Admission::Refusing;
    }
    let refuse = score > params.refuse_above;
    match previous {
        Admission::Accepting if refuse => Admission::Refusing,
        Admission::Accepting => Admission::Accepting,
        Admission::Refusing if !refuse && score < params.accept_below => Admission::Accepting,
        Admission::Refusing => Admission::Refusing,
    }
}

/// Why a node cannot take a batch request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FilterReason {
    /// The node refuses batch work because its online services suffer.
    InterferenceHigh {
        /// Its interference score, 0..100.
        score: f64,
        /// The score below which it accepts batch work again.
        accept_below: f64,
    },
    /// Not enough batch CPU left.
    InsufficientCpu {
        /// Millicores the request asks for.
        requested: u64,
        /// Millicores of the batch budget not in use.
        available: u64,
    },
    /// Not enough batch memory left.
    InsufficientMemory {
        /// Bytes the request asks for.
        requested: u64,
        /// Bytes of the batch budget not in use.
        available: u64,
    },
}

impl FilterReason {
    /// True when evicting lower-priority batch work from the node could make room (the
    /// Kubernetes scheduler may then preempt); false when nothing the scheduler can do helps
    /// (`FailedAndUnresolvableNodes`): a node refusing because of online interference stays
    /// refused whatever batch pods it evicts, since the agent already squeezes them.
    #[must_use]
    pub const fn resolvable_by_preemption(&self) -> bool {
        !matches!(self, Self::InterferenceHigh { .. })
    }
}

impl FilterReason {
    /// A fixed one-line reason without the node's numbers. Kubernetes adds up identical reasons
    /// in the pod's event (`0/5000 nodes are available: 700 colo: ...`), so these stay the same
    /// from node to node; `Display` gives the detailed form for logs and node listings.
    #[must_use]
    pub const fn summary(&self) -> &'static str {
        match self {
            Self::InterferenceHigh { .. } => {
                "colo: online services on the node suffer interference, no batch work for now"
            }
            Self::InsufficientCpu { .. } => "colo: not enough reclaimable CPU for batch work",
            Self::InsufficientMemory { .. } => "colo: not enough reclaimable memory for batch work",
        }
    }
}

impl fmt::Display for FilterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        match *self {
            Self::InterferenceHigh {
                score,
                accept_below,
            } => {
                // Whole numbers, formatted as integers: float formatting with a precision is
                // slow, and filter calls format this for thousands of nodes.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let whole = |x: f64| x.clamp(0.0, 100.0).round() as u8;
                write!(
                    f,
                    "colo: online interference score {}/100 is too high for batch work \
                     (accepted again below {})",
                    whole(score),
                    whole(accept_below)
                )
            }
            Self::InsufficientCpu {
                requested,
                available,
            } => write!(
                f,
                "colo: batch CPU requested {requested}m, only {available}m reclaimable and free"
            ),
            Self::InsufficientMemory {
                requested,
                available,
            } => write!(
                f,
                "colo: batch memory requested {} MiB, only {} MiB reclaimable and free",
                requested.div_ceil(MIB),
                available / MIB
            ),
        }
    }
}

/// May a batch request go to a node?
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FilterVerdict {
    /// Yes.
    Fits,
    /// No, for this reason.
    Refused(FilterReason),
}

impl FilterVerdict {
    /// True for [`FilterVerdict::Fits`].
    #[must_use]
    pub const fn fits(&self) -> bool {
        matches!(self, Self::Fits)
    }
}

/// The filter verdict for a batch `request` on `node`, whose admission state is `admission`
/// (from [`batch_admission`]). Interference is checked first, then CPU, then memory.
#[must_use]
#[inline]
pub fn filter_node(
    node: &NodeState,
    admission: Admission,
    request: Resources,
    params: &AdmissionParams,
) -> FilterVerdict {
    if admission == Admission::Refusing {
        return FilterVerdict::Refused(FilterReason::InterferenceHigh {
            score: node.interference_or_worst(),
            accept_below: params.accept_below.min(params.refuse_above),
        });
    }
    let available = node.available_for_batch();
    if request.cpu_millicores > available.cpu_millicores {
        return FilterVerdict::Refused(FilterReason::InsufficientCpu {
            requested: request.cpu_millicores,
            available: available.cpu_millicores,
        });
    }
    if request.memory_bytes > available.memory_bytes {
        return FilterVerdict::Refused(FilterReason::InsufficientMemory {
            requested: request.memory_bytes,
            available: available.memory_bytes,
        });
    }
    FilterVerdict::Fits
}

/// How good a place `node` is for a batch `request`, 0..=[`MAX_NODE_SCORE`]: a weighted mean
/// of the node's quietness (100 − interference) and the batch capacity left after placing it
/// (the scarcer of CPU and memory, as a share of capacity). Never falls when the batch budget
/// grows or interference drops. A request that does not fit gets 0 free share, not an error:
/// the filter is what refuses.
#[must_use]
#[inline]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
pub fn node_score(node: &NodeState, request: Resources, params: &NodeScoreParams) -> u8 {
    let left = node.available_for_batch().saturating_sub(request);
    let share = |left: u64, cap: u64| {
        if cap == 0 {
            0.0
        } else {
            (to_f64(left) / to_f64(cap)).min(1.0)
        }
    };
    let free = share(left.cpu_millicores, node.capacity.cpu_millicores)
        .min(share(left.memory_bytes, node.capacity.memory_bytes));
    let quiet = 1.0 - node.interference_or_worst() / 100.0;
    let w = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let (wf, wq) = (w(params.reclaimable_weight), w(params.interference_weight));
    if wf + wq <= 0.0 {
        return 0;
    }
    let s = f64::from(MAX_NODE_SCORE) * (wf * free + wq * quiet) / (wf + wq);
    // In 0..=10 by construction (NaN, from overflowing weights, gives 0); the min guards
    // rounding.
    round_score(s).min(MAX_NODE_SCORE)
}

/// `x as f64`, through the signed conversion (one instruction on x86_64) when `x` fits an
/// `i64`, as every real capacity does: the same value either way (both round to nearest).
#[inline]
#[allow(clippy::cast_precision_loss)]
fn to_f64(x: u64) -> f64 {
    match i64::try_from(x) {
        Ok(i) => i as f64,
        Err(_) => x as f64,
    }
}

/// `s.round()` (half away from zero) as a `u8`, for `s` in 0..=255 (0 for NaN or below 0),
/// without the call to libm's `round` that `f64::round` compiles to on baseline x86_64: the
/// scheduler scores thousands of nodes per call. Exact: `s - trunc(s)` is exact for any `s`.
#[inline]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const fn round_score(s: f64) -> u8 {
    let whole = s as u8;
    // Without a branch: scores land either side of .5 at random, and a mispredicted branch
    // costs more than the arithmetic.
    whole.saturating_add((s - whole as f64 >= 0.5) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    fn score_rounding_matches_f64_round() {
        let check = |s: f64| {
            let want = s.round().clamp(0.0, 255.0) as u8;
            assert_eq!(round_score(s), want, "{s:?}");
        };
        for s in [
            0.0,
            -0.0,
            0.5,
            0.499_999_999_999_999_94,
            1.5,
            2.5,
            9.5,
            9.499_999_999_999_998,
            10.0,
            254.5,
            255.0,
            f64::NAN,
            -1.0,
            f64::MIN_POSITIVE,
        ] {
            check(s);
        }
        for x in [
            0,
            1,
            3,
            (1 << 53) + 1,
            i64::MAX as u64,
            (1 << 63) + 1,
            u64::MAX,
            17 << 30,
        ] {
            assert_eq!(to_f64(x).to_bits(), (x as f64).to_bits(), "{x}");
        }
        for i in 0..=100_000 {
            check(f64::from(i) / 10_000.0);
            check(f64::from(i).mul_add(1e-4, 0.5));
            check(f64::from(i) * 0.1 + 1e-12);
            check(f64::from(i) * 0.1 - 1e-12);
        }
    }

    const GIB: u64 = 1 << 30;

    fn node(reclaim_cpu: u64, offline_cpu: u64, interference: f64) -> NodeState {
        NodeState {
            capacity: Resources::new(10_000, 100 * GIB),
            reclaimable: Resources::new(reclaim_cpu, 50 * GIB),
            offline_usage: Resources::new(offline_cpu, 10 * GIB),
            interference,
        }
    }

    #[test]
    fn hysteresis_keeps_a_node_from_flapping() {
        let p = AdmissionParams::default();
        let mut a = Admission::default();
        let mut trace = Vec::new();
        for score in [10.0, 70.0, 70.1, 65.0, 55.0, 50.0, 49.9, 60.0, 70.0, 71.0] {
            a = batch_admission(score, a, &p);
            trace.push(a == Admission::Accepting);
        }
        assert_eq!(
            trace,
            [
                true, true, false, false, false, false, true, true, true, false
            ]
        );
        assert_eq!(
            batch_admission(f64::NAN, Admission::Accepting, &p),
            Admission::Refusing
        );
    }

    #[test]
    fn inverted_hysteresis_band_does_not_panic_or_accept_above_refuse() {
        let p = AdmissionParams {
            refuse_above: 50.0,
            accept_below: 80.0,
        };
        assert_eq!(
            batch_admission(60.0, Admission::Refusing, &p),
            Admission::Refusing
        );
        assert_eq!(
            batch_admission(40.0, Admission::Refusing, &p),
            Admission::Accepting
        );
    }

    #[test]
    fn filter_checks_interference_then_cpu_then_memory() {
        let p = AdmissionParams::default();
        let n = node(6_000, 2_000, 20.0);
        assert!(filter_node(&n, Admission::Accepting, Resources::new(4_000, GIB), &p).fits());
        assert_eq!(
            filter_node(&n, Admission::Accepting, Resources::new(4_001, GIB), &p),
            FilterVerdict::Refused(FilterReason::InsufficientCpu {
                requested: 4_001,
                available: 4_000
            })
        );
        let big_mem = Resources::new(1_000, 41 * GIB);
        let FilterVerdict::Refused(r) = filter_node(&n, Admission::Accepting, big_mem, &p) else {
            panic!("41 GiB should not fit in 40");
        };
        assert!(r.resolvable_by_preemption());
        assert_eq!(
            r.summary(),
            "colo: not enough reclaimable memory for batch work"
        );
        assert_eq!(
            r.to_string(),
            "colo: batch memory requested 41984 MiB, only 40960 MiB reclaimable and free"
        );
        let FilterVerdict::Refused(r) = filter_node(&n, Admission::Refusing, Resources::ZERO, &p)
        else {
            panic!("a refusing node takes nothing");
        };
        assert!(!r.resolvable_by_preemption());
        assert_eq!(
            r.to_string(),
            "colo: online interference score 20/100 is too high for batch work \
             (accepted again below 50)"
        );
    }

    #[test]
    fn scores_span_zero_to_ten() {
        let p = NodeScoreParams::default();
        let idle = NodeState {
            capacity: Resources::new(10_000, 100 * GIB),
            reclaimable: Resources::new(10_000, 100 * GIB),
            offline_usage: Resources::ZERO,
            interference: 0.0,
        };
        assert_eq!(node_score(&idle, Resources::ZERO, &p), 10);
        let hot = NodeState {
            reclaimable: Resources::ZERO,
            interference: 100.0,
            ..idle
        };
        assert_eq!(node_score(&hot, Resources::ZERO, &p), 0);
        assert_eq!(
            node_score(
                &NodeState {
                    interference: f64::NAN,
                    ..idle
                },
                Resources::ZERO,
                &p
            ),
            4
        );
        assert_eq!(node_score(&NodeState::default(), Resources::ZERO, &p), 6);
        let no_weights = NodeScoreParams {
            reclaimable_weight: 0.0,
            interference_weight: f64::NAN,
        };
        assert_eq!(node_score(&idle, Resources::ZERO, &no_weights), 0);
    }

    fn any_node() -> impl Strategy<Value = NodeState> {
        (
            0u64..200_000,
            0u64..1 << 40,
            0u64..200_000,
            0u64..1 << 40,
            0u64..200_000,
            0u64..1 << 40,
            prop_oneof![-10.0f64..110.0, Just(f64::NAN)],
        )
            .prop_map(|(cc, cm, rc, rm, oc, om, i)| NodeState {
                capacity: Resources::new(cc, cm),
                reclaimable: Resources::new(rc, rm),
                offline_usage: Resources::new(oc, om),
                interference: i,
            })
    }

    proptest! {
        #[test]
        fn score_is_within_bounds(n in any_node(), rc in 0u64..100_000, rm in 0u64..1 << 40) {
            let s = node_score(&n, Resources::new(rc, rm), &NodeScoreParams::default());
            prop_assert!(s <= MAX_NODE_SCORE);
        }

        #[test]
        fn more_budget_or_less_interference_never_lowers_the_score(
            n in any_node(), more_cpu in 0u64..50_000, more_mem in 0u64..1 << 38,
            calmer in 0.0f64..100.0,
        ) {
            let p = NodeScoreParams::default();
            let req = Resources::new(500, 1 << 30);
            let base = node_score(&n, req, &p);
            let richer = NodeState {
                reclaimable: n.reclaimable.saturating_add(Resources::new(more_cpu, more_mem)),
                ..n
            };
            prop_assert!(node_score(&richer, req, &p) >= base);
            if !n.interference.is_nan() {
                let quieter = NodeState { interference: n.interference - calmer, ..n };
                prop_assert!(node_score(&quieter, req, &p) >= base);
            }
        }

        #[test]
        fn a_fitting_request_passes_an_accepting_node(n in any_node()) {
            let avail = n.available_for_batch();
            let p = AdmissionParams::default();
            prop_assert!(filter_node(&n, Admission::Accepting, avail, &p).fits());
        }
    }
}
