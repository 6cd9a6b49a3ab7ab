//! The in-memory node table: the last report of every node, with sequence tracking and each
//! node's batch admission state (hysteresis lives here, one state per node).
//!
//! Reports and sequence numbers are sharded by node name, each shard behind its own `RwLock`, so
//! ingest from many streams rarely meets on one lock. What placement reads (state, admission,
//! receipt time) lives in one compact [`index`] behind its own lock, which ingest holds only to
//! copy a few fields in, and which the extender reads thousands of names from per request. Times
//! are the scheduler's own monotonic clock at receipt (agents' clocks may be skewed); callers pass
//! `now`, so tests need no sleeping.
//!
//! Bounded: a table holds at most its `max_nodes` nodes (a new node beyond is refused), and
//! [`NodeTable::forget_older_than`] drops nodes that stopped reporting.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use colo_policy::scoring::{Admission, AdmissionParams, NodeState, Resources, batch_admission};
use colo_proto::report::{self, NodeReport};

mod index;
mod name;

use index::{Clock, Index, Record};
use name::NameKey;
pub use name::{NameHash, NameHasher, NameSource};

/// Shards of the table (at most 64: the top 6 bits of a name's hash pick one).
const SHARDS: usize = 64;

/// A report that cannot be stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// The report names no node.
    #[error(
        "report with seq {seq} has an empty node_name: set the node name in the agent's config"
    )]
    EmptyNodeName {
        /// The report's sequence number.
        seq: u64,
    },
    /// The table holds as many nodes as it may.
    #[error(
        "the node table is full ({max} nodes): raise colo-scheduler's --max-nodes if the cluster \
         has more nodes, or lower --forget-after so nodes that stopped reporting leave sooner"
    )]
    TableFull {
        /// Most nodes a table holds.
        max: usize,
    },
}

/// What became of one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Stored as the node's latest report.
    Stored {
        /// Reports missing between the previous one and this one (sequence gap).
        missed: u64,
        /// True when the report comes from a new agent incarnation (its start time changed), so
        /// its sequence numbering began again.
        agent_restarted: bool,
    },
    /// A duplicate, or older than what is stored (out of order, or from an earlier agent
    /// incarnation): ignored.
    Ignored,
}

/// The outcome of [`NodeTable::ingest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestOutcome {
    /// What became of the report.
    pub ingested: Ingested,
    /// The highest sequence number stored for the node (the acknowledgement to send).
    pub ack_seq: u64,
}

/// A node as placement sees it at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeSnapshot {
    /// Capacity, batch budget, batch usage and interference from the last report.
    pub state: NodeState,
    /// Whether the node takes batch work (with hysteresis).
    pub admission: Admission,
    /// Time since the last report was received.
    pub age: Duration,
}

/// One node's report and sequence bookkeeping; what placement reads is its [`Record`] in the
/// index, under the same name.
#[derive(Debug)]
struct NodeEntry {
    report: Box<NodeReport>,
    missed_total: u64,
}

type Map = HashMap<NameKey, NodeEntry, NameHash>;
type Shard = RwLock<Map>;

/// The last report of every node that ever reported to this scheduler.
#[derive(Debug)]
pub struct NodeTable {
    shards: Box<[Shard]>,
    hash: NameHash,
    admission: AdmissionParams,
    /// Most nodes held.
    max_nodes: usize,
    /// Lock order: a shard's lock first, then this one. A node is in its shard exactly when it
    /// is in the index; both change under the shard's lock.
    index: RwLock<Index>,
    clock: Clock,
}

/// The placement state of every node held for reading (one read lock, taken once), so a request
/// that looks up thousands of nodes pays for locking once. Ingest into the table waits while a
/// view exists: keep one for a single request.
#[derive(Debug)]
pub struct TableView<'a> {
    index: RwLockReadGuard<'a, Index>,
    clock: Clock,
}

impl TableView<'_> {
    /// The node named `name` as of `now`, or `None` if it never reported.
    #[must_use]
    pub fn lookup(&self, name: &str, now: Instant) -> Option<NodeSnapshot> {
        let now = self.clock.at(now);
        self.index.find(name).map(|r| self.index.snapshot(r, now))
    }

    /// Calls `f(i, found)` for each of `names` in order: what [`TableView::lookup`] would find,
    /// with freshness already judged against `stale_after`, but many names at a time, so their
    /// memory loads overlap, and without building a [`NodeSnapshot`] each.
    pub fn lookup_each<S: NameSource + ?Sized>(
        &self,
        names: &S,
        now: Instant,
        stale_after: Duration,
        mut f: impl FnMut(usize, Option<Found>),
    ) {
        let now = self.clock.at(now);
        let max_age = i64::try_from(stale_after.as_nanos()).unwrap_or(i64::MAX);
        self.index.lookup_each(names, |i, r| {
            f(
                i,
                r.map(|r| Found {
                    state: r.place.node_state(),
                    admission: r.admission,
                    fresh: now.saturating_sub(r.received) <= max_age,
                    plain_name: r.plain_name,
                }),
            );
        });
    }
}

/// A node found by [`TableView::lookup_each`].
#[derive(Clone, Copy, Debug)]
pub struct Found {
    /// What placement reads of the last report: capacity, interference, and the batch budget
    /// not in use as `reclaimable` (with `offline_usage` zero), so the policy's `filter_node`
    /// and `node_score` decide on it as on the full state.
    pub state: NodeState,
    /// Whether the node takes batch work (with hysteresis).
    pub admission: Admission,
    /// True when the last report is no older than the `stale_after` asked about.
    pub fresh: bool,
    /// True when the node's name encodes in JSON as itself between quotes (checked once, when
    /// the node was first stored).
    pub plain_name: bool,
}

impl NodeTable {
    /// An empty table as large as the index allows (16,777,215 nodes); `admission` sets when
    /// nodes stop and resume taking batch work. A server bounds it: [`NodeTable::with_max_nodes`].
    #[must_use]
    pub fn new(admission: AdmissionParams) -> Self {
        Self::with_max_nodes(admission, index::MAX_NODES)
    }

    /// An empty table that refuses new nodes once it holds `max_nodes` (at most 16,777,215).
    #[must_use]
    pub fn with_max_nodes(admission: AdmissionParams, max_nodes: usize) -> Self {
        let hash = NameHash {
            seed: RandomState::new().hash_one(0x636f_6c6f_u64),
        };
        Self {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(hash)))
                .collect(),
            hash,
            admission,
            max_nodes: max_nodes.min(index::MAX_NODES),
            index: RwLock::new(Index::new(hash)),
            clock: Clock::new(),
        }
    }

    fn index_read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn shard_index(&self, name: &str) -> usize {
        // A cheaper mix than the map's own hash (which runs again inside the map): the first
        // and last 8 bytes and the length, seeded, multiplied, top bits. Names differing only in
        // the middle share a shard, which costs nothing but balance.
        let b = name.as_bytes();
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        let head = word(&b[..b.len().min(8)]);
        let tail = word(&b[b.len().saturating_sub(8)..]);
        let mixed = (head ^ tail.rotate_left(29) ^ (b.len() as u64) ^ self.hash.seed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        #[allow(clippy::cast_possible_truncation)]
        let i = (mixed >> 58) as usize;
        i % SHARDS
    }

    fn shard(&self, name: &str) -> &Shard {
        &self.shards[self.shard_index(name)]
    }

    /// Holds the placement state for reading (see [`TableView`]).
    #[must_use]
    pub fn view(&self) -> TableView<'_> {
        TableView {
            index: self.index_read(),
            clock: self.clock,
        }
    }

    /// Stores `report`, received at `now`, unless it is a duplicate or older than what is stored.
    ///
    /// Sequence rules, per node: a report with a newer `agent_start_unix_ms` than the stored one
    /// starts a new incarnation (accepted whatever its sequence number); one with an older start
    /// is ignored; otherwise `seq` must exceed the stored one, and a jump of more than one counts
    /// the missing reports. The first report of a node counts no gap (the scheduler may have
    /// restarted, not the agent).
    ///
    /// # Errors
    /// [`IngestError::EmptyNodeName`] when the report names no node; [`IngestError::TableFull`]
    /// when it is a new node and the table holds `max_nodes` already.
    pub fn ingest(&self, report: NodeReport, now: Instant) -> Result<IngestOutcome, IngestError> {
        if report.node_name.is_empty() {
            return Err(IngestError::EmptyNodeName { seq: report.seq });
        }
        let state = node_state(&report);
        let mut shard = self
            .shard(&report.node_name)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = shard.get_mut(report.node_name.as_str()) else {
            let seq = report.seq;
            let admission =
                batch_admission(state.interference, Admission::default(), &self.admission);
            let plain = crate::gojson::is_plain(report.node_name.as_bytes());
            {
                let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
                let full = IngestError::TableFull {
                    max: self.max_nodes,
                };
                if index.len() >= self.max_nodes {
                    return Err(full);
                }
                index
                    .insert(
                        &report.node_name,
                        state,
                        Record::new(&state, admission, self.clock.at(now), plain),
                    )
                    .ok_or(full)?;
            }
            shard.insert(
                NameKey::new(&report.node_name),
                NodeEntry {
                    report: Box::new(report),
                    missed_total: 0,
                },
            );
            return Ok(IngestOutcome {
                ingested: Ingested::Stored {
                    missed: 0,
                    agent_restarted: false,
                },
                ack_seq: seq,
            });
        };
        let stored = &entry.report;
        let (restarted, missed) = if report.agent_start_unix_ms > stored.agent_start_unix_ms {
            (true, 0)
        } else if report.agent_start_unix_ms < stored.agent_start_unix_ms
            || report.seq <= stored.seq
        {
            return Ok(IngestOutcome {
                ingested: Ingested::Ignored,
                ack_seq: stored.seq,
            });
        } else {
            (false, report.seq - stored.seq - 1)
        };
        {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            let received = self.clock.at(now);
            if let Some(r) = index.find(&report.node_name) {
                index.update(r, state, received, |previous| {
                    batch_admission(state.interference, previous, &self.admission)
                });
            } else {
                // Not reached: shard and index change together under the shard's lock. Should
                // they ever disagree, the node gets its record back rather than a panic.
                let admission =
                    batch_admission(state.interference, Admission::default(), &self.admission);
                let plain = crate::gojson::is_plain(report.node_name.as_bytes());
                let record = Record::new(&state, admission, received, plain);
                let _ = index.insert(&report.node_name, state, record);
            }
        }
        entry.missed_total = entry.missed_total.saturating_add(missed);
        *entry.report = report;
        Ok(IngestOutcome {
            ingested: Ingested::Stored {
                missed,
                agent_restarted: restarted,
            },
            ack_seq: entry.report.seq,
        })
    }

    /// The node named `name` as of `now`, or `None` if it never reported.
    #[must_use]
    pub fn lookup(&self, name: &str, now: Instant) -> Option<NodeSnapshot> {
        self.view().lookup(name, now)
    }

    /// The stored sequence number of a node and the reports found missing so far.
    #[must_use]
    pub fn sequence(&self, name: &str) -> Option<(u64, u64)> {
        let shard = self
            .shard(name)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(name).map(|e| (e.report.seq, e.missed_total))
    }

    /// Number of nodes known, and how many of them are older than `stale_after` at `now`.
    #[must_use]
    pub fn counts(&self, now: Instant, stale_after: Duration) -> (usize, usize) {
        let index = self.index_read();
        let now = self.clock.at(now);
        let stale = index.ages(now).filter(|age| *age > stale_after).count();
        (index.len(), stale)
    }

    /// Calls `f` with every node's name, last report and snapshot at `now` (for listings; not
    /// for hot paths: it holds each shard's read lock while visiting it).
    pub fn for_each(&self, now: Instant, mut f: impl FnMut(&str, &NodeReport, NodeSnapshot)) {
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            let index = self.index_read();
            let now = self.clock.at(now);
            for (name, e) in shard.iter() {
                if let Some(r) = index.find(name.as_str()) {
                    f(name.as_str(), &e.report, index.snapshot(r, now));
                }
            }
        }
    }

    /// One page of the table in name order: up to `limit` nodes named after `after` (from the
    /// first when `None`), each with its last report and snapshot at `now`; and whether more
    /// nodes follow. Costs a copy of every name after `after`, not of every report.
    #[must_use]
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        now: Instant,
    ) -> (Vec<(NodeReport, NodeSnapshot)>, bool) {
        let mut names: Vec<Box<str>> = Vec::new();
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            names.extend(
                shard
                    .keys()
                    .map(NameKey::as_str)
                    .filter(|n| after.is_none_or(|a| *n > a))
                    .map(Box::from),
            );
        }
        let more = names.len() > limit;
        if more {
            names.select_nth_unstable(limit);
            names.truncate(limit);
        }
        names.sort_unstable();
        let now = self.clock.at(now);
        let mut page = Vec::with_capacity(names.len());
        for name in &names {
            let shard = self
                .shard(name)
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let index = self.index_read();
            // A node forgotten since its name was read is left out.
            if let (Some(e), Some(r)) = (shard.get(&**name), index.find(name)) {
                page.push(((*e.report).clone(), index.snapshot(r, now)));
            }
        }
        (page, more)
    }

    /// Drops every node whose last report is older than `age` at `now`; returns how many. Takes
    /// each shard's write lock in turn (with the index's), and returns at once, after one pass
    /// over the receipt times, when no node is that old.
    pub fn forget_older_than(&self, now: Instant, age: Duration) -> usize {
        let now = self.clock.at(now);
        if !self.index_read().ages(now).any(|a| a > age) {
            return 0;
        }
        let mut forgotten = 0;
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|name, _| {
                let old = index
                    .find(name.as_str())
                    .is_none_or(|r| index.snapshot(r, now).age > age);
                if old {
                    index.remove(name.as_str());
                    forgotten += 1;
                }
                !old
            });
        }
        forgotten
    }

    /// Most nodes this table holds.
    #[must_use]
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }
}

fn resources(r: Option<&report::Resources>) -> Resources {
    r.map_or(Resources::ZERO, |r| {
        Resources::new(r.cpu_millicores, r.memory_bytes)
    })
}

/// What placement needs from a report. A report without an interference score counts as
/// severely interfered (NaN): an unknown state is not a quiet one.
#[must_use]
pub fn node_state(report: &NodeReport) -> NodeState {
    NodeState {
        capacity: resources(report.capacity.as_ref()),
        reclaimable: resources(report.reclaimable.as_ref()),
        offline_usage: resources(report.offline_usage.as_ref()),
        interference: report.interference.as_ref().map_or(f64::NAN, |i| i.score),
    }
}

#[cfg(test)]
mod tests;
