//! The scheduler's side of the loop: colo-scheduler's verdict on one node's report, and the
//! placement of pending VMs on the reports of the round before.

use std::collections::VecDeque;

use colo_policy::scoring::{Resources, ScoringParams, filter_node, node_score};

use super::{Pending, SimConfig};
use crate::node::Report;

/// colo-scheduler's verdict on a batch `request` for a node that reported `r`: `None` when
/// the filter refuses it, else the node's 0..10 score. The same two `colo_policy::scoring`
/// calls colo-scheduler's extender makes (`filter_node`, then `node_score` for nodes that pass),
/// plus the simulator's own slot limit and mode eligibility.
#[must_use]
pub fn judge(r: &Report, request: Resources, p: &ScoringParams) -> Option<u8> {
    (r.eligible
        && r.free_slots > 0
        && filter_node(&r.state, r.admission, request, &p.admission).fits())
    .then(|| node_score(&r.state, request, &p.node_score))
}

/// Places pending VMs, FIFO with bounded backfill: each VM goes to the best-scoring of the
/// first `feasible_nodes` nodes that pass colo's filter, scanning from a rotating start. It
/// decides on `view` (the nodes' reports, which it updates as it places, as colo-scheduler
/// counts what it bound) and adds each choice to `placed`, which the nodes take in when the
/// next round starts.
pub(super) fn place(
    cfg: &SimConfig,
    view: &mut [Report],
    steps: u32,
    pending: &mut VecDeque<Pending>,
    retry: &mut Vec<Pending>,
    placed: &mut Vec<(usize, Pending)>,
    cursor: &mut usize,
) {
    let n = view.len();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let budget = (cfg.scan_budget * n as f64 * f64::from(steps)).max(1.0) as usize;
    let max_attempts = cfg.max_attempts.saturating_mul(steps as usize);
    let mut scans = 0usize;
    let mut attempts = 0usize;
    // Requests that found no node this step: anything at least as large fails too.
    let mut failed: [Resources; 8] = [Resources::ZERO; 8];
    let mut n_failed = 0usize;
    let p = &cfg.scoring;
    while attempts < max_attempts && scans < budget {
        let Some(vm) = pending.pop_front() else {
            break;
        };
        attempts += 1;
        let req = vm.spec.request();
        if failed[..n_failed].iter().any(|f| f.fits_in(req)) {
            retry.push(vm);
            continue;
        }
        let mut best: Option<(u8, usize)> = None;
        let mut found = 0;
        let mut i = *cursor;
        let mut looked = 0;
        while looked < n && found < cfg.feasible_nodes.max(1) && scans < budget {
            looked += 1;
            scans += 1;
            if let Some(s) = judge(&view[i], req, p) {
                found += 1;
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, i));
                }
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        *cursor = i;
        if let Some((_, i)) = best {
            view[i].reserve(req);
            placed.push((i, vm));
        } else {
            if n_failed < failed.len() {
                failed[n_failed] = req;
                n_failed += 1;
            }
            retry.push(vm);
        }
    }
    for vm in retry.drain(..).rev() {
        pending.push_front(vm);
    }
}
