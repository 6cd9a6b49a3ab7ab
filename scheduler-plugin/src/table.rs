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
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use colo_policy::scoring::{Admission, AdmissionParams, NodeState, Resources, batch_admission};
use colo_proto::report::{self, NodeReport};

mod index;

use index::{Clock, Index, Record};

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

/// A fast seeded hash for node names (a multiply-rotate over 8-byte words, as rustc's FxHash,
/// with a final avalanche): the extender looks up thousands of names per request, where SipHash's
/// cost shows. The seed is random per table, so crafted names cannot aim at one bucket offline.
#[derive(Debug, Clone, Copy)]
pub struct NameHash {
    seed: u64,
}

impl NameHash {
    /// The hash the placement index files `name` under: a folded 64×64→128-bit multiply of the
    /// name's bytes (read as at most two overlapping words for names up to 16 bytes, most of
    /// them; word by word beyond) with the table's random seed, inlined at the caller.
    #[inline(always)]
    #[must_use]
    pub fn of(self, name: &[u8]) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let n = name.len();
        let word = |i: usize| {
            name.get(i..i + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let half = |i: usize| {
            name.get(i..i + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
        };
        let len = n as u64;
        // Every byte lands in (lo, hi), so with the length mixed in, different names give
        // different inputs to the last fold.
        let (mut acc, lo, hi) = if n > 16 {
            let mut acc = self.seed ^ len;
            let mut i = 0;
            while i + 16 < n {
                acc = fold(acc ^ word(i), K ^ word(i + 8));
                i += 16;
            }
            (acc, word(n - 16), word(n - 8))
        } else if n >= 8 {
            (self.seed ^ len, word(0), word(n - 8))
        } else if n >= 4 {
            (self.seed ^ len, half(0), half(n - 4))
        } else if n > 0 {
            let b = |i: usize| u64::from(name[i]);
            (
                self.seed ^ len,
                b(0) | (b(n / 2) << 8) | (b(n - 1) << 16),
                0,
            )
        } else {
            (self.seed, 0, 0)
        };
        acc = fold(acc ^ lo, K ^ hi ^ self.seed.rotate_left(32));
        fold(acc, K ^ len)
    }
}

/// The folded multiply: both halves of the 128-bit product of `a` and `b`, xored.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    // The two halves of the product.
    #[allow(clippy::cast_possible_truncation)]
    let (low, high) = (p as u64, (p >> 64) as u64);
    low ^ high
}

/// Names to look up by position: a request's [`NameList`](crate::k8s::NameList), or a slice of
/// strings.
pub trait NameSource {
    /// How many names.
    fn count(&self) -> usize;
    /// The bytes of name `i`, for `i < count()`.
    fn name_bytes(&self, i: usize) -> &[u8];
}

impl NameSource for crate::k8s::NameList<'_> {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn name_bytes(&self, i: usize) -> &[u8] {
        self.bytes(i)
    }
}

impl<N: std::ops::Deref<Target = str>> NameSource for [N] {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn name_bytes(&self, i: usize) -> &[u8] {
        self[i].as_bytes()
    }
}

impl BuildHasher for NameHash {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(self.seed)
    }
}

/// The hasher of [`NameHash`].
#[derive(Debug)]
pub struct NameHasher(u64);

impl NameHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::K).rotate_left(26);
    }
}

/// The last 1..=7 bytes of a name as one word, from two overlapping loads (or three single
/// bytes), so the hash needs no copy through the stack. Every byte lands in the word, so with the
/// length mixed in, different tails give different words.
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    let u32_at = |i: usize| {
        rest.get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
    };
    if n >= 4 {
        u32_at(0) | (u32_at(n - 4) << 32)
    } else if n > 0 {
        u64::from(rest[0]) | (u64::from(rest[n / 2]) << 8) | (u64::from(rest[n - 1]) << 16)
    } else {
        0
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.add(tail_word(rest) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

type Map = HashMap<NameKey, NodeEntry, NameHash>;

/// Longest name stored inline in a [`NameKey`].
const INLINE_NAME: usize = 30;

/// A node name as a map key: inline when it is short (most are), so a lookup compares it without
/// following a pointer; boxed otherwise. Hashes and compares as the `str` it holds.
#[derive(Clone)]
enum NameKey {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<str>),
}

impl NameKey {
    fn new(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(name.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Inline { len, bytes } => {
                let b = &bytes[..usize::from(*len)];
                // SAFETY: `b` is a copy of the bytes of a `&str` (see `new`), cut at its length,
                // so it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(b) }
            }
            Self::Heap(s) => s,
        }
    }
}

impl std::borrow::Borrow<str> for NameKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NameKey {}

impl std::hash::Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}
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
            let plain = crate::k8s::is_json_plain(report.node_name.as_bytes());
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
                let plain = crate::k8s::is_json_plain(report.node_name.as_bytes());
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
mod tests {
    use super::*;

    fn report(name: &str, seq: u64, start: i64, score: f64) -> NodeReport {
        NodeReport {
            node_name: name.into(),
            seq,
            agent_start_unix_ms: start,
            capacity: Some(report::Resources {
                cpu_millicores: 8_000,
                memory_bytes: 32 << 30,
            }),
            reclaimable: Some(report::Resources {
                cpu_millicores: 4_000,
                memory_bytes: 16 << 30,
            }),
            interference: Some(report::Interference {
                score,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn stored(missed: u64) -> Ingested {
        Ingested::Stored {
            missed,
            agent_restarted: false,
        }
    }

    #[test]
    fn sequence_rules() {
        let t = NodeTable::new(AdmissionParams::default());
        let now = Instant::now();
        let ingest = |seq, start| t.ingest(report("n1", seq, start, 10.0), now).unwrap();
        assert_eq!(
            ingest(5, 100).ingested,
            stored(0),
            "first sight counts no gap"
        );
        assert_eq!(ingest(6, 100).ingested, stored(0));
        let dup = ingest(6, 100);
        assert_eq!(dup.ingested, Ingested::Ignored);
        assert_eq!(dup.ack_seq, 6);
        assert_eq!(ingest(4, 100).ingested, Ingested::Ignored);
        assert_eq!(ingest(9, 100).ingested, stored(2));
        assert_eq!(t.sequence("n1"), Some((9, 2)));
        let restart = ingest(1, 200);
        assert_eq!(
            restart.ingested,
            Ingested::Stored {
                missed: 0,
                agent_restarted: true
            }
        );
        assert_eq!(restart.ack_seq, 1);
        assert_eq!(
            ingest(10, 100).ingested,
            Ingested::Ignored,
            "older incarnation"
        );
        assert_eq!(t.sequence("n1"), Some((1, 2)));
    }

    #[test]
    fn empty_name_is_refused() {
        let t = NodeTable::new(AdmissionParams::default());
        let err = t.ingest(report("", 3, 0, 0.0), Instant::now()).unwrap_err();
        assert_eq!(err, IngestError::EmptyNodeName { seq: 3 });
        assert!(err.to_string().contains("empty node_name"));
    }

    #[test]
    fn admission_has_hysteresis_across_reports() {
        let t = NodeTable::new(AdmissionParams::default());
        let now = Instant::now();
        let mut seq = 0;
        let mut adm = |score| {
            seq += 1;
            t.ingest(report("n", seq, 1, score), now).unwrap();
            t.lookup("n", now).unwrap().admission
        };
        assert_eq!(adm(20.0), Admission::Accepting);
        assert_eq!(adm(75.0), Admission::Refusing);
        assert_eq!(adm(60.0), Admission::Refusing);
        assert_eq!(adm(45.0), Admission::Accepting);
        let t2 = NodeTable::new(AdmissionParams::default());
        t2.ingest(report("hot", 1, 1, 90.0), now).unwrap();
        assert_eq!(
            t2.lookup("hot", now).unwrap().admission,
            Admission::Refusing
        );
    }

    #[test]
    fn age_and_counts_follow_the_callers_clock() {
        let t = NodeTable::new(AdmissionParams::default());
        let t0 = Instant::now();
        t.ingest(report("a", 1, 1, 0.0), t0).unwrap();
        t.ingest(report("b", 1, 1, 0.0), t0 + Duration::from_secs(100))
            .unwrap();
        let later = t0 + Duration::from_secs(200);
        assert_eq!(t.lookup("a", later).unwrap().age, Duration::from_secs(200));
        assert_eq!(t.counts(later, Duration::from_secs(180)), (2, 1));
        assert!(t.lookup("zzz", later).is_none());
        let mut names = Vec::new();
        t.for_each(later, |n, _, _| names.push(n.to_owned()));
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn the_view_sees_what_lookup_sees() {
        let t = NodeTable::new(AdmissionParams::default());
        let now = Instant::now();
        for i in 0..500 {
            t.ingest(report(&format!("node-{i}"), 1, 1, f64::from(i % 100)), now)
                .unwrap();
        }
        let v = t.view();
        for i in 0..500 {
            let name = format!("node-{i}");
            assert_eq!(v.lookup(&name, now), t.lookup(&name, now), "{name}");
            assert!(v.lookup(&name, now).is_some());
        }
        assert!(v.lookup("node-500", now).is_none());
        let used = t
            .shards
            .iter()
            .filter(|s| !s.read().unwrap().is_empty())
            .count();
        assert!(
            used > 50,
            "names spread over the shards: {used} of {SHARDS}"
        );
    }

    #[test]
    fn short_and_long_names_are_keys_alike() {
        let t = NodeTable::new(AdmissionParams::default());
        let now = Instant::now();
        let long = "n".repeat(INLINE_NAME + 1);
        let edge = "é".repeat(INLINE_NAME / 2);
        for name in ["a", edge.as_str(), long.as_str()] {
            t.ingest(report(name, 1, 1, 0.0), now).unwrap();
            assert!(t.lookup(name, now).is_some(), "{name}");
            assert_eq!(NameKey::new(name).as_str(), name);
        }
        assert!(matches!(NameKey::new(&edge), NameKey::Inline { .. }));
        assert!(matches!(NameKey::new(&long), NameKey::Heap(_)));
        assert!(t.lookup(&long[1..], now).is_none());
        assert_eq!(format!("{:?}", NameKey::new("x")), "\"x\"");
        assert_eq!(std::mem::size_of::<NameKey>(), 32);
    }

    #[test]
    fn index_hash_separates_similar_names() {
        let h = NameHash { seed: 7 };
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(h.of(format!("node-{i:05}").as_bytes())));
            assert!(seen.insert(h.of(format!("gke-pool-{i}-a-much-longer-node-name").as_bytes())));
        }
        assert_ne!(h.of(b"ab"), h.of(b"ab\0"));
        assert_ne!(h.of(b""), h.of(b"\0"));
        for len in 1..=40 {
            let base = vec![b'x'; len];
            for i in 0..len {
                let mut other = base.clone();
                other[i] = b'y';
                assert_ne!(h.of(&base), h.of(&other), "{len} {i}");
            }
        }
        // The low bits (the slot) spread: 5,000 sequential names over 8,192 slots.
        let slots: std::collections::HashSet<u64> = (0..5_000)
            .map(|i| h.of(format!("node-{i:05}").as_bytes()) & 8_191)
            .collect();
        assert!(slots.len() > 3_500, "{}", slots.len());
        assert_ne!(NameHash { seed: 8 }.of(b"node-1"), h.of(b"node-1"));
    }

    #[test]
    fn name_hash_separates_similar_names() {
        let h = NameHash { seed: 7 };
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            assert!(seen.insert(h.hash_one(format!("node-{i:05}"))));
        }
        assert_ne!(h.hash_one("ab"), h.hash_one("ab\0"));
        // Tails of every length, differing in one byte at every position.
        for len in 1..=16 {
            let base = "x".repeat(len);
            for i in 0..len {
                let mut other = base.clone().into_bytes();
                other[i] = b'y';
                let other = String::from_utf8(other).unwrap();
                assert_ne!(h.hash_one(&base), h.hash_one(&other), "{len} {i}");
            }
        }
        assert_ne!(h.hash_one(""), h.hash_one("\0"));
    }

    #[test]
    fn a_full_table_refuses_new_nodes_only() {
        let t = NodeTable::with_max_nodes(AdmissionParams::default(), 3);
        let now = Instant::now();
        for n in ["a", "b", "c"] {
            t.ingest(report(n, 1, 1, 0.0), now).unwrap();
        }
        let err = t.ingest(report("d", 1, 1, 0.0), now).unwrap_err();
        assert_eq!(err, IngestError::TableFull { max: 3 });
        assert!(err.to_string().contains("--max-nodes"), "{err}");
        assert!(t.lookup("d", now).is_none());
        assert!(t.sequence("d").is_none());
        // Known nodes keep reporting.
        assert_eq!(t.ingest(report("a", 2, 1, 0.0), now).unwrap().ack_seq, 2);
        assert_eq!(t.counts(now, Duration::from_secs(1)), (3, 0));
    }

    #[test]
    fn nodes_that_stop_reporting_are_forgotten() {
        let t = NodeTable::with_max_nodes(AdmissionParams::default(), 100);
        let t0 = Instant::now();
        for i in 0..100 {
            let at = t0 + Duration::from_secs(if i % 2 == 0 { 0 } else { 50 });
            t.ingest(report(&format!("n{i}"), 1, 1, f64::from(i)), at)
                .unwrap();
        }
        assert!(t.ingest(report("late", 1, 1, 0.0), t0).is_err());
        let later = t0 + Duration::from_secs(100);
        assert_eq!(t.forget_older_than(later, Duration::from_secs(100)), 0);
        assert_eq!(t.forget_older_than(later, Duration::from_secs(60)), 50);
        assert_eq!(t.counts(later, Duration::from_secs(180)), (50, 0));
        for i in 0..100 {
            let name = format!("n{i}");
            let seen = t.lookup(&name, later);
            assert_eq!(seen.is_some(), i % 2 == 1, "{name}");
            if let Some(s) = seen {
                assert_eq!(
                    s.state.interference,
                    f64::from(i),
                    "{name} kept its own state"
                );
                assert_eq!(s.age, Duration::from_secs(50));
            }
            assert_eq!(t.sequence(&name).is_some(), i % 2 == 1, "{name}");
        }
        // Room again; a forgotten node that comes back starts afresh.
        t.ingest(report("late", 1, 1, 0.0), later).unwrap();
        assert_eq!(t.ingest(report("n0", 9, 1, 0.0), later).unwrap().ack_seq, 9);
        assert_eq!(t.sequence("n0"), Some((9, 0)));
        // Reports keep flowing to the nodes that stayed.
        assert_eq!(t.ingest(report("n1", 2, 1, 5.0), later).unwrap().ack_seq, 2);
        assert_eq!(t.lookup("n1", later).unwrap().age, Duration::ZERO);
    }

    #[test]
    fn pages_walk_the_names_in_order() {
        let t = NodeTable::new(AdmissionParams::default());
        let now = Instant::now();
        let mut want: Vec<String> = (0..1_234)
            .map(|i| format!("node-{:04}", (i * 7) % 1_234))
            .collect();
        for n in &want {
            t.ingest(report(n, 3, 1, 0.0), now).unwrap();
        }
        want.sort();
        let mut got = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = t.page(after.as_deref(), 100, now);
            assert!(page.len() <= 100);
            got.extend(page.iter().map(|(r, _)| r.node_name.clone()));
            assert!(
                page.iter()
                    .all(|(r, s)| r.seq == 3 && s.age == Duration::ZERO)
            );
            if !more {
                break;
            }
            after = got.last().cloned();
        }
        assert_eq!(got, want);
        let (page, more) = t.page(Some("node-1233"), 10, now);
        assert!(page.is_empty() && !more);
        let (page, more) = t.page(None, 1_234, now);
        assert_eq!(page.len(), 1_234);
        assert!(!more);
    }

    #[test]
    fn missing_interference_counts_as_severe() {
        let t = NodeTable::new(AdmissionParams::default());
        let now = Instant::now();
        let mut r = report("n", 1, 1, 0.0);
        r.interference = None;
        t.ingest(r, now).unwrap();
        assert_eq!(t.lookup("n", now).unwrap().admission, Admission::Refusing);
    }
}
