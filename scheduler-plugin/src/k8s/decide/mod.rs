//! The extender's decisions: filter, prioritize and preempt, over the node table at one instant.
//! Pure functions of (request, table, config, now): the HTTP layer only decodes and encodes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use colo_policy::scoring::Resources;
use serde_json::value::RawValue;

use super::pod::{batch_request, is_batch};
use super::wire::{
    ExtenderArgs, ExtenderFilterResult, ExtenderPreemptionArgs, ExtenderPreemptionResult, MetaPod,
    MetaVictims, Name, NodeListOut, PriorityWriter, RawNode, SortedMap, priorities_len_hint,
};
use crate::config::{SchedulerConfig, StaleNodes};
use crate::gojson::{self, GoRaw, NameList};
use crate::table::NodeTable;

/// A request the extender cannot serve (the message names what is wrong).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// No `Pod` in the request.
    #[error("the request has no Pod: kube-scheduler always sends the pod being scheduled")]
    NoPod,
    /// Neither `Nodes` nor `NodeNames`.
    #[error(
        "the request has neither NodeNames nor Nodes: send NodeNames when the extender is \
         nodeCacheCapable, else Nodes"
    )]
    NoNodes,
    /// A node in `Nodes.items` is unusable.
    #[error("{0}")]
    BadNode(String),
}

/// Why a node without a report fails the filter. Fixed texts, so Kubernetes adds them up in the
/// pod's event; `/nodes` and `ListNodes` show each node's age.
pub const REASON_NO_REPORT: &str = "colo: no report from the node's colo-agent";
/// Why a node whose last report is too old fails the filter.
pub const REASON_STALE: &str = "colo: the node's colo-agent report is stale";

mod judge;

use judge::{CODE, Judge, Outcome, PASS, PLAIN, RESOLVABLE, Reasons};

/// `{}`, the ListMeta of a NodeList that came without one.
fn empty_object() -> &'static RawValue {
    // A valid JSON literal: `from_string` cannot fail on it.
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| {
        RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("{{}} is JSON"))
    })
}

/// The candidate node names of a filter or prioritize call, in request order (borrowed from the
/// request in `NodeNames` mode).
fn candidate_names<'r, 'a>(
    args: &'r ExtenderArgs<'a>,
) -> Result<Cow<'r, NameList<'a>>, RequestError> {
    if let Some(n) = &args.node_names {
        Ok(Cow::Borrowed(n))
    } else if let Some(list) = &args.nodes {
        let names = list
            .items
            .iter()
            .flatten()
            .map(RawNode::name)
            .collect::<Result<Vec<_>, _>>()
            .map_err(RequestError::BadNode)?;
        Ok(Cow::Owned(NameList::from_names(names.iter().map(|t| &**t))))
    } else {
        Err(RequestError::NoNodes)
    }
}

/// Appends candidate `i`'s name as a JSON string: the request's own bytes when the request wrote
/// it as Go would, else encoded (copied as is when `plain`, the node's name known plain).
#[inline(always)]
fn push_candidate(out: &mut Vec<u8>, names: &NameList<'_>, i: usize, plain: bool) {
    match names.plain_quoted(i) {
        Some(q) => gojson::push_short(out, q.0, q.1),
        None => gojson::push_name(out, names.get(i), plain),
    }
}

/// Whether name `a` sorts strictly before name `b` (byte order, as Go sorts map keys); names of
/// one length from 8 to 16 bytes (most) compared as two big-endian words, without `memcmp`.
#[inline]
fn ascending(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n == b.len() && (8..=16).contains(&n) {
        let word = |s: &[u8], i: usize| {
            s.get(i..i + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                .map_or(0, u64::from_be_bytes)
        };
        // The second words overlap the first; where the first are equal, the overlap is too.
        return (word(a, 0), word(a, n - 8)) < (word(b, 0), word(b, n - 8));
    }
    a < b
}

/// Appends a `FailedNodes`-style map of the candidates whose outcome is a failure with
/// resolvability `resolvable`, as Go encodes a `map[string]string`: keys sorted, each once.
/// `encoded[c - 1]` is `:` and the encoded reason of failure code `c`. Returns the entry count.
fn push_failed(
    out: &mut Vec<u8>,
    names: &NameList<'_>,
    outcomes: &[Outcome],
    reasons: &Reasons,
    encoded: &[Vec<u8>],
    resolvable: bool,
) -> u64 {
    let _ = reasons;
    let member = |o: Outcome| o & CODE != PASS && (o & RESOLVABLE != 0) == resolvable;
    let entry = |out: &mut Vec<u8>, first: bool, i: usize| {
        if !first {
            out.push(b',');
        }
        let o = outcomes[i];
        push_candidate(out, names, i, o & PLAIN != 0);
        out.extend_from_slice(&encoded[usize::from(o & CODE) - 1]);
    };
    let start = out.len();
    out.push(b'{');
    // Names usually come sorted (kube-scheduler lists nodes in its cache's order, tests and
    // benchmarks sorted): write in request order while that holds.
    let mut prev: Option<&[u8]> = None;
    let mut count = 0;
    let mut sorted = true;
    for (i, &o) in outcomes.iter().enumerate() {
        if !member(o) {
            continue;
        }
        let name = names.bytes(i);
        if prev.is_some_and(|p| !ascending(p, name)) {
            sorted = false;
            break;
        }
        prev = Some(name);
        entry(out, count == 0, i);
        count += 1;
    }
    if !sorted {
        out.truncate(start + 1);
        let mut order: Vec<usize> = (0..outcomes.len())
            .filter(|&i| member(outcomes[i]))
            .collect();
        // Stable: entries of one name stay in request order, and the last one is kept, as a
        // Go map keeps the last value stored.
        order.sort_by(|&a, &b| names.get(a).cmp(names.get(b)));
        count = 0;
        for (k, &i) in order.iter().enumerate() {
            if order
                .get(k + 1)
                .is_some_and(|&next| names.get(next) == names.get(i))
            {
                continue;
            }
            entry(out, count == 0, i);
            count += 1;
        }
    }
    out.push(b'}');
    count
}

/// The `ExtenderFilterResult` of a `NodeNames` call, written straight into one buffer: the same
/// bytes as the general encoder (unit-tested against it), without a list or map built first.
fn encode_names_result(
    names: &NameList<'_>,
    outcomes: &[Outcome],
    failed: usize,
    reasons: &Reasons,
) -> (Vec<u8>, u64, u64) {
    let encoded: Vec<Vec<u8>> = reasons
        .0
        .iter()
        .map(|(text, _)| {
            let mut e = vec![b':'];
            gojson::push_string(&mut e, text);
            e
        })
        .collect();
    let longest = encoded.iter().map(Vec::len).max().unwrap_or(0);
    let mut out =
        Vec::with_capacity(names.text_len() + 3 * names.len() + failed * (longest + 1) + 128);
    out.extend_from_slice(br#"{"Nodes":null,"NodeNames":["#);
    let mut first = true;
    for (i, &o) in outcomes.iter().enumerate() {
        if o & CODE == PASS {
            if !first {
                out.push(b',');
            }
            first = false;
            push_candidate(&mut out, names, i, o & PLAIN != 0);
        }
    }
    out.extend_from_slice(br#"],"FailedNodes":"#);
    let resolvable = push_failed(&mut out, names, outcomes, reasons, &encoded, true);
    out.extend_from_slice(br#","FailedAndUnresolvableNodes":"#);
    let unresolvable = push_failed(&mut out, names, outcomes, reasons, &encoded, false);
    out.extend_from_slice(br#","Error":""}"#);
    (out, resolvable, unresolvable)
}

/// Answers a filter call with the encoded `ExtenderFilterResult`.
///
/// # Errors
/// [`RequestError`] when the request lacks the pod or the candidate nodes, or a full node has no
/// name.
pub fn filter(
    args: &ExtenderArgs<'_>,
    table: &NodeTable,
    config: &SchedulerConfig,
    now: Instant,
) -> Result<Vec<u8>, RequestError> {
    let pod = args.pod.as_ref().ok_or(RequestError::NoPod)?;
    let names = candidate_names(args)?;

    // Per candidate: pass or why not, and whether its name is known to need no escaping.
    let mut outcomes = vec![PASS; names.len()];
    let mut reasons = Reasons::new();
    let mut failed = 0;
    if is_batch(pod, &config.batch) {
        let judge = Judge {
            table: table.view(),
            config,
            now,
            request: batch_request(pod, &config.batch),
        };
        judge
            .table
            .lookup_each(&*names, now, config.stale_after, |i, found| {
                let o = judge.outcome(found, &mut reasons);
                failed += usize::from(o & CODE != PASS);
                outcomes[i] = o;
            });
    }

    let (bytes, resolvable, unresolvable) = if args.nodes.is_none() {
        encode_names_result(&names, &outcomes, failed, &reasons)
    } else {
        encode_general_result(args, &names, &outcomes, &reasons)
    };
    if resolvable > 0 {
        metrics::counter!(crate::metrics::FILTER_REJECTIONS, "kind" => "failed")
            .increment(resolvable);
    }
    if unresolvable > 0 {
        metrics::counter!(crate::metrics::FILTER_REJECTIONS, "kind" => "unresolvable")
            .increment(unresolvable);
    }
    Ok(bytes)
}

/// The `ExtenderFilterResult` of a call that sent full `Nodes` (with or without `NodeNames`),
/// through the general encoder.
fn encode_general_result(
    args: &ExtenderArgs<'_>,
    names: &NameList<'_>,
    outcomes: &[Outcome],
    reasons: &Reasons,
) -> (Vec<u8>, u64, u64) {
    let mut failed = SortedMap::default();
    let mut unresolvable = SortedMap::default();
    for (i, &o) in outcomes.iter().enumerate() {
        if o & CODE == PASS {
            continue;
        }
        let name = Name {
            text: names.get(i),
            plain: o & PLAIN != 0,
        };
        let (reason, resolvable) = reasons.of(o);
        if resolvable {
            failed.insert_name(name, reason);
        } else {
            unresolvable.insert_name(name, reason);
        }
    }
    let (failed, unresolvable) = (failed.finish(), unresolvable.finish());
    let counts = (failed.len() as u64, unresolvable.len() as u64);
    let passes = |o: &&Outcome| **o & CODE == PASS;
    let node_names = args.node_names.as_ref().map(|_| {
        (0..names.len())
            .filter(|&i| outcomes[i] & CODE == PASS)
            .map(|i| Name {
                text: names.get(i),
                plain: outcomes[i] & PLAIN != 0,
            })
            .collect()
    });
    let nodes = args.nodes.as_ref().map(|list| {
        let items = list.items.iter().flatten();
        let items = if args.node_names.is_some() {
            // Both sent: the decisions are keyed by NodeNames; match items by their own names.
            let passing: std::collections::HashSet<&str> = names
                .iter()
                .zip(outcomes)
                .filter(|(_, o)| passes(o))
                .map(|(n, _)| n)
                .collect();
            items
                .filter(|n| n.name().is_ok_and(|t| passing.contains(&*t)))
                .map(|n| GoRaw(n.raw))
                .collect()
        } else {
            // Nodes mode: items and names line up.
            items
                .zip(outcomes)
                .filter(|(_, o)| passes(o))
                .map(|(n, _)| GoRaw(n.raw))
                .collect()
        };
        NodeListOut {
            kind: list.kind.as_deref().unwrap_or(""),
            api_version: list.api_version.as_deref().unwrap_or(""),
            metadata: GoRaw(list.metadata.unwrap_or_else(|| empty_object())),
            items,
        }
    });
    let bytes = ExtenderFilterResult {
        nodes,
        node_names,
        failed_nodes: Some(failed),
        failed_and_unresolvable_nodes: Some(unresolvable),
        error: String::new(),
    }
    .encode();
    (bytes, counts.0, counts.1)
}

/// The encoded `ExtenderFilterResult` of a filter call that could not be served.
#[must_use]
pub fn filter_error(message: String) -> Vec<u8> {
    gojson::to_vec(&ExtenderFilterResult {
        error: message,
        ..ExtenderFilterResult::default()
    })
}

/// Answers a prioritize call with the encoded `HostPriorityList`: batch pods get each node's
/// score 0..10; other pods get 0 on every node (equal scores: colo does not steer them).
///
/// # Errors
/// [`RequestError`] as for [`filter`].
pub fn prioritize(
    args: &ExtenderArgs<'_>,
    table: &NodeTable,
    config: &SchedulerConfig,
    now: Instant,
) -> Result<Vec<u8>, RequestError> {
    let pod = args.pod.as_ref().ok_or(RequestError::NoPod)?;
    let names = candidate_names(args)?;
    // Encoded as each node is scored, straight into one buffer.
    let mut out = PriorityWriter::with_capacity(priorities_len_hint(&names));
    if is_batch(pod, &config.batch) {
        let judge = Judge {
            table: table.view(),
            config,
            now,
            request: batch_request(pod, &config.batch),
        };
        judge
            .table
            .lookup_each(&*names, now, config.stale_after, |i, found| {
                let (score, plain) = judge.score(found);
                out.push(|out| push_candidate(out, &names, i, plain), score);
            });
    } else {
        for i in 0..names.len() {
            out.push(|out| push_candidate(out, &names, i, false), 0);
        }
    }
    Ok(out.finish())
}

/// Answers a preempt call. kube-scheduler proposes, per node, the pods it would evict; colo
/// keeps only the nodes where that eviction would let a batch pod in: nodes that are fresh, take
/// batch work (interference below the threshold), and — when the victims come as full pods —
/// whose free batch budget plus what the victims hold covers the request. Other pods' proposals
/// pass unchanged. Victims are returned by UID (`NodeNameToMetaVictims`), as the API requires.
///
/// # Errors
/// [`RequestError::NoPod`] when the request has no pod.
pub fn preempt(
    args: ExtenderPreemptionArgs,
    table: &NodeTable,
    config: &SchedulerConfig,
    now: Instant,
) -> Result<Vec<u8>, RequestError> {
    let pod = args.pod.as_ref().ok_or(RequestError::NoPod)?;
    let batch = is_batch(pod, &config.batch);
    let judge = Judge {
        table: table.view(),
        config,
        now,
        request: batch_request(pod, &config.batch),
    };
    // Whether preemption on `name` can help, given what the victims hold (None: unknown).
    let helps = |name: &str, freed: Option<Resources>| -> bool {
        if !batch {
            return true;
        }
        let snap = match judge.fresh(name) {
            Ok(s) => s,
            Err(_) => return config.stale_nodes == StaleNodes::Neutral,
        };
        if snap.admission == colo_policy::scoring::Admission::Refusing {
            return false;
        }
        freed.is_none_or(|freed| {
            judge
                .request
                .fits_in(snap.state.available_for_batch().saturating_add(freed))
        })
    };
    let mut out = BTreeMap::new();
    if let Some(victims) = args.node_name_to_meta_victims {
        for (node, v) in victims {
            if helps(&node, None) {
                out.insert(node, v.unwrap_or_default());
            }
        }
    } else if let Some(victims) = args.node_name_to_victims {
        for (node, v) in victims {
            let v = v.unwrap_or_default();
            let pods: Vec<_> = v.pods.into_iter().flatten().flatten().collect();
            let freed = pods.iter().fold(Resources::ZERO, |acc, p| {
                acc.saturating_add(batch_request(p, &config.batch))
            });
            if helps(&node, Some(freed)) {
                let meta = MetaVictims {
                    pods: Some(
                        pods.iter()
                            .map(|p| {
                                Some(MetaPod {
                                    uid: p.uid().to_owned(),
                                })
                            })
                            .collect(),
                    ),
                    num_pdb_violations: v.num_pdb_violations.unwrap_or(0),
                };
                out.insert(node, meta);
            }
        }
    }
    Ok(gojson::to_vec(&ExtenderPreemptionResult {
        node_name_to_meta_victims: Some(out),
    }))
}

#[cfg(test)]
mod tests;
