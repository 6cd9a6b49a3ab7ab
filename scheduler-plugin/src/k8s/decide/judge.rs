//! One request's verdicts on its candidate nodes: fresh or stale, the filter's outcome in one
//! byte, the prioritize score, and the distinct failure reasons.

use std::time::Instant;

use colo_policy::scoring::{FilterVerdict, Resources, filter_node, node_score};

use super::{REASON_NO_REPORT, REASON_STALE};
use crate::config::{SchedulerConfig, StaleNodes};
use crate::table::{Found, NodeSnapshot, TableView};

/// Judges candidate nodes for one request: the table held for reading, the config, the
/// request's time and batch resources.
pub(super) struct Judge<'a> {
    pub(super) table: TableView<'a>,
    pub(super) config: &'a SchedulerConfig,
    pub(super) now: Instant,
    pub(super) request: Resources,
}

impl Judge<'_> {
    /// The node's snapshot when it is fresh; `Err(None)` when unknown, `Err(Some(age))` when
    /// stale.
    pub(super) fn fresh(&self, name: &str) -> Result<NodeSnapshot, Option<std::time::Duration>> {
        self.fresh_of(self.table.lookup(name, self.now))
    }

    /// [`Judge::fresh`] of a node already looked up.
    pub(super) fn fresh_of(
        &self,
        found: Option<NodeSnapshot>,
    ) -> Result<NodeSnapshot, Option<std::time::Duration>> {
        match found {
            None => Err(None),
            Some(s) if s.age > self.config.stale_after => Err(Some(s.age)),
            Some(s) => Ok(s),
        }
    }

    /// The filter outcome of a node looked up by [`TableView::lookup_each`] (see [`Outcome`]).
    pub(super) fn outcome(&self, found: Option<Found>, reasons: &mut Reasons) -> u8 {
        let Some(f) = found else {
            return self.stale_outcome(NO_REPORT);
        };
        let plain = if f.plain_name { PLAIN } else { 0 };
        if !f.fresh {
            return plain | self.stale_outcome(STALE);
        }
        let p = &self.config.scoring;
        match filter_node(&f.state, f.admission, self.request, &p.admission) {
            FilterVerdict::Fits => plain | PASS,
            FilterVerdict::Refused(r) => {
                plain | reasons.code(r.summary(), r.resolvable_by_preemption())
            }
        }
    }

    fn stale_outcome(&self, code: u8) -> u8 {
        match self.config.stale_nodes {
            StaleNodes::Neutral => PASS,
            StaleNodes::Filter => code,
        }
    }

    /// The prioritize score, and whether the node's name is known plain: the filter's losers
    /// get 0 (kube-scheduler does not ask about them anyway); no strings are built.
    pub(super) fn score(&self, found: Option<Found>) -> (u8, bool) {
        let stale = match self.config.stale_nodes {
            StaleNodes::Neutral => self.config.neutral_score,
            StaleNodes::Filter => 0,
        };
        let Some(f) = found else {
            return (stale, false);
        };
        if !f.fresh {
            return (stale, f.plain_name);
        }
        let p = &self.config.scoring;
        let score = if filter_node(&f.state, f.admission, self.request, &p.admission).fits() {
            node_score(&f.state, self.request, &p.node_score)
        } else {
            0
        };
        (score, f.plain_name)
    }
}

/// A filter candidate's outcome in one byte: the low six bits ([`CODE`]) are [`PASS`] or a
/// failure code from [`Reasons`]; [`RESOLVABLE`] marks a failure preemption may resolve;
/// [`PLAIN`] says the node's name is known to need no JSON escaping.
pub(super) type Outcome = u8;
/// The candidate passes.
pub(super) const PASS: Outcome = 0;
/// The bits of the failure code.
pub(super) const CODE: Outcome = 0x3f;
/// The failure may be resolved by preemption (`FailedNodes`, not `FailedAndUnresolvableNodes`).
pub(super) const RESOLVABLE: Outcome = 0x40;
/// The candidate's name encodes in JSON as itself between quotes.
pub(super) const PLAIN: Outcome = 0x80;
/// Failure code of a node without a report.
pub(super) const NO_REPORT: Outcome = 1;
/// Failure code of a node whose report is stale.
pub(super) const STALE: Outcome = 2;

/// The distinct failure reasons of one filter call (a handful of fixed texts), numbered from 1.
pub(super) struct Reasons(pub(super) Vec<(&'static str, bool)>);

impl Reasons {
    pub(super) fn new() -> Self {
        Self(vec![(REASON_NO_REPORT, false), (REASON_STALE, false)])
    }

    /// The code of reason `text` (found by address: the texts are `'static` constants).
    pub(super) fn code(&mut self, text: &'static str, resolvable: bool) -> Outcome {
        let at = match self
            .0
            .iter()
            .position(|(t, r)| std::ptr::eq(*t, text) && *r == resolvable)
        {
            Some(at) => at,
            None => {
                self.0.push((text, resolvable));
                self.0.len() - 1
            }
        };
        // The policy has three reasons, this file two: far below the 63 codes there are.
        let code = Outcome::try_from(at + 1).map_or(STALE, |c| c.min(CODE));
        if resolvable { code | RESOLVABLE } else { code }
    }

    /// Reason and resolvability of outcome `o` (not a pass).
    pub(super) fn of(&self, o: Outcome) -> (&'static str, bool) {
        self.0
            .get(usize::from(o & CODE).wrapping_sub(1))
            .copied()
            .unwrap_or((REASON_STALE, false))
    }
}
