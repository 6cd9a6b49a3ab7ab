//! The extender's decisions: filter, prioritize and preempt, over the node table at one instant.
//! Pure functions of (request, table, config, now): the HTTP layer only decodes and encodes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use colo_policy::scoring::{FilterVerdict, Resources, filter_node, node_score};
use serde_json::value::RawValue;

use super::decode::Text;
use super::gojson::{self, GoRaw};
use super::pod::{batch_request, is_batch};
use super::wire::{
    ExtenderArgs, ExtenderFilterResult, ExtenderPreemptionArgs, ExtenderPreemptionResult, MetaPod,
    MetaVictims, Name, NodeListOut, RawNode, SortedMap, priorities_len_hint, push_priority,
};
use crate::config::{SchedulerConfig, StaleNodes};
use crate::table::{NodeSnapshot, NodeTable, TableView};

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

/// The verdict on one candidate node for a batch pod.
enum Judgement {
    Pass,
    Fail {
        reason: &'static str,
        resolvable: bool,
    },
}

/// Why a node without a report fails the filter. Fixed texts, so Kubernetes adds them up in the
/// pod's event; `/nodes` and `ListNodes` show each node's age.
pub const REASON_NO_REPORT: &str = "colo: no report from the node's colo-agent";
/// Why a node whose last report is too old fails the filter.
pub const REASON_STALE: &str = "colo: the node's colo-agent report is stale";

struct Judge<'a> {
    table: TableView<'a>,
    config: &'a SchedulerConfig,
    now: Instant,
    request: Resources,
}

impl Judge<'_> {
    /// The node's snapshot when it is fresh; `Err(None)` when unknown, `Err(Some(age))` when
    /// stale.
    fn fresh(&self, name: &str) -> Result<NodeSnapshot, Option<std::time::Duration>> {
        self.fresh_of(self.table.lookup(name, self.now))
    }

    /// [`Judge::fresh`] of a node already looked up.
    fn fresh_of(
        &self,
        found: Option<NodeSnapshot>,
    ) -> Result<NodeSnapshot, Option<std::time::Duration>> {
        match found {
            None => Err(None),
            Some(s) if s.age > self.config.stale_after => Err(Some(s.age)),
            Some(s) => Ok(s),
        }
    }

    fn stale_judgement(&self, age: Option<std::time::Duration>) -> Judgement {
        match self.config.stale_nodes {
            StaleNodes::Neutral => Judgement::Pass,
            StaleNodes::Filter => Judgement::Fail {
                reason: if age.is_some() {
                    REASON_STALE
                } else {
                    REASON_NO_REPORT
                },
                resolvable: false,
            },
        }
    }

    fn judge(&self, found: Option<NodeSnapshot>) -> Judgement {
        let snap = match self.fresh_of(found) {
            Ok(s) => s,
            Err(age) => return self.stale_judgement(age),
        };
        let p = &self.config.scoring;
        match filter_node(&snap.state, snap.admission, self.request, &p.admission) {
            FilterVerdict::Fits => Judgement::Pass,
            FilterVerdict::Refused(r) => Judgement::Fail {
                reason: r.summary(),
                resolvable: r.resolvable_by_preemption(),
            },
        }
    }

    /// The prioritize score: the filter's losers get 0 (kube-scheduler does not ask about them
    /// anyway); no strings are built.
    fn score(&self, found: Option<NodeSnapshot>) -> u8 {
        let snap = match self.fresh_of(found) {
            Ok(s) => s,
            Err(_) => {
                return match self.config.stale_nodes {
                    StaleNodes::Neutral => self.config.neutral_score,
                    StaleNodes::Filter => 0,
                };
            }
        };
        let p = &self.config.scoring;
        if filter_node(&snap.state, snap.admission, self.request, &p.admission).fits() {
            node_score(&snap.state, self.request, &p.node_score)
        } else {
            0
        }
    }
}

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
) -> Result<Cow<'r, [Text<'a>]>, RequestError> {
    if let Some(n) = &args.node_names {
        Ok(Cow::Borrowed(n))
    } else if let Some(list) = &args.nodes {
        list.items
            .iter()
            .flatten()
            .map(RawNode::name)
            .collect::<Result<Vec<_>, _>>()
            .map(Cow::Owned)
            .map_err(RequestError::BadNode)
    } else {
        Err(RequestError::NoNodes)
    }
}

/// A filter candidate's outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    No,
    Yes,
    /// Passes, and its name is known to need no JSON escaping.
    YesPlain,
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

    let mut failed = SortedMap::default();
    let mut unresolvable = SortedMap::default();
    // Per candidate: whether it passes, and whether its name is known to need no escaping.
    let mut pass = vec![Pass::Yes; names.len()];
    if is_batch(pod, &config.batch) {
        let judge = Judge {
            table: table.view(),
            config,
            now,
            request: batch_request(pod, &config.batch),
        };
        judge.table.lookup_each(&names, now, |i, found, plain| {
            let name = Name {
                text: &names[i],
                plain,
            };
            match judge.judge(found) {
                Judgement::Pass if plain => pass[i] = Pass::YesPlain,
                Judgement::Pass => {}
                Judgement::Fail { reason, resolvable } => {
                    pass[i] = Pass::No;
                    if resolvable {
                        failed.insert_name(name, reason);
                    } else {
                        unresolvable.insert_name(name, reason);
                    }
                }
            }
        });
    }
    let (failed, unresolvable) = (failed.finish(), unresolvable.finish());
    if !failed.is_empty() {
        metrics::counter!(crate::metrics::FILTER_REJECTIONS, "kind" => "failed")
            .increment(failed.len() as u64);
    }
    if !unresolvable.is_empty() {
        metrics::counter!(crate::metrics::FILTER_REJECTIONS, "kind" => "unresolvable")
            .increment(unresolvable.len() as u64);
    }

    let node_names = args.node_names.as_ref().map(|_| {
        names
            .iter()
            .zip(&pass)
            .filter(|(_, p)| **p != Pass::No)
            .map(|(n, p)| Name {
                text: n,
                plain: *p == Pass::YesPlain,
            })
            .collect()
    });
    let nodes = args.nodes.as_ref().map(|list| {
        let items = list.items.iter().flatten();
        let items = if args.node_names.is_some() {
            // Both sent: the decisions are keyed by NodeNames; match items by their own names.
            let passing: std::collections::HashSet<&str> = names
                .iter()
                .zip(&pass)
                .filter(|(_, p)| **p != Pass::No)
                .map(|(n, _)| &**n)
                .collect();
            items
                .filter(|n| n.name().is_ok_and(|t| passing.contains(&*t)))
                .map(|n| GoRaw(n.raw))
                .collect()
        } else {
            // Nodes mode: items and names line up.
            items
                .zip(&pass)
                .filter(|(_, p)| **p != Pass::No)
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
    Ok(ExtenderFilterResult {
        nodes,
        node_names,
        failed_nodes: Some(failed),
        failed_and_unresolvable_nodes: Some(unresolvable),
        error: String::new(),
    }
    .encode())
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
    let mut out = Vec::with_capacity(priorities_len_hint(&names));
    out.push(b'[');
    if is_batch(pod, &config.batch) {
        let judge = Judge {
            table: table.view(),
            config,
            now,
            request: batch_request(pod, &config.batch),
        };
        judge.table.lookup_each(&names, now, |i, found, plain| {
            let host = Name {
                text: &names[i],
                plain,
            };
            push_priority(&mut out, i == 0, host, i64::from(judge.score(found)));
        });
    } else {
        for (i, host) in names.iter().enumerate() {
            push_priority(&mut out, i == 0, Name::from(&**host), 0);
        }
    }
    out.push(b']');
    Ok(out)
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
