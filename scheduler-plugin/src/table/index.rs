//! The placement index: what placement reads of every node (name, state, admission, receipt
//! time) in dense arrays, found by name through a compact open-addressing table.
//!
//! A filter or prioritize call looks up thousands of names. Through a map per shard each lookup
//! waits on two or three cache misses in turn; here the slots (4 bytes each), the records (one
//! cache line each) and the names (packed end to end) are plain arrays, so
//! [`Index::lookup_each`] can hash a batch of names, prefetch their slots, then their records,
//! and keep many misses in flight at once. At 5,000 nodes the lot is about 0.4 MiB, so it stays
//! in a core's L2 cache between calls.

use std::time::{Duration, Instant};

use colo_policy::scoring::{Admission, NodeState, Resources};

use super::{NameHash, NameSource, NodeSnapshot};

/// Names looked up together by [`Index::lookup_each`]: enough to overlap many cache misses,
/// few enough that the batch's slots and records stay in L1.
const BATCH: usize = 32;

/// Most nodes an index holds: a slot keeps a record's position in 24 bits.
pub(super) const MAX_NODES: usize = (1 << 24) - 1;

/// What placement reads of a node's state: the batch budget not in use, the capacity and the
/// interference score. [`Placement::node_state`] gives a [`NodeState`] on which the policy's
/// placement functions (`filter_node`, `node_score`, which read only the budget left, the
/// capacity and the score) decide exactly as on the full state (unit-tested).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Placement {
    available: Resources,
    capacity: Resources,
    interference: f64,
}

impl Placement {
    pub(super) fn of(state: &NodeState) -> Self {
        Self {
            available: state.available_for_batch(),
            capacity: state.capacity,
            interference: state.interference,
        }
    }

    /// A state with this budget left, this capacity and this score (the budget as reclaimable,
    /// nothing in use).
    #[inline]
    pub(super) fn node_state(&self) -> NodeState {
        NodeState {
            capacity: self.capacity,
            reclaimable: self.available,
            offline_usage: Resources::ZERO,
            interference: self.interference,
        }
    }
}

/// One node as placement reads it: exactly one cache line, aligned, so a lookup touches that
/// line, the name's bytes and nothing else.
#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct Record {
    /// Batch budget left, capacity and interference from the last report.
    pub(super) place: Placement,
    /// When the last report was received, as [`Clock::at`] gives it.
    pub(super) received: i64,
    /// The name: `names[name_at..name_at + name_len]` of the index.
    name_at: u32,
    name_len: u32,
    /// Whether the node takes batch work (with hysteresis).
    pub(super) admission: Admission,
    /// Whether the name encodes in JSON as itself between quotes (checked once, at insert), so
    /// an answer can copy it without looking at it again.
    pub(super) plain_name: bool,
}

impl Record {
    /// A record for a node first seen; its name is placed by [`Index::insert`].
    pub(super) fn new(state: &NodeState, admission: Admission, received: i64, plain: bool) -> Self {
        Self {
            place: Placement::of(state),
            received,
            name_at: 0,
            name_len: 0,
            admission,
            plain_name: plain,
        }
    }

    /// Age at `now` (from [`Clock::at`]).
    fn age(&self, now: i64) -> Duration {
        Duration::from_nanos(u64::try_from(now.saturating_sub(self.received)).unwrap_or(0))
    }
}

/// Instants as signed nanoseconds from the table's creation: an age is then one subtraction,
/// where `Instant` arithmetic (checked, on seconds and nanoseconds apart) shows up at thousands
/// of lookups per request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// `t` on this clock (saturating some 292 years either side).
    pub(super) fn at(self, t: Instant) -> i64 {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        if t >= self.epoch {
            nanos(t - self.epoch)
        } else {
            -nanos(self.epoch - t)
        }
    }
}

/// Name → record. A removal moves the last record into the hole, so a record's position holds
/// only while the caller holds the index's lock: find a node by name each time.
#[derive(Debug)]
pub(super) struct Index {
    hash: NameHash,
    /// Linear probing; `0` is empty, else `tag << 24 | (record + 1)` where the tag is the top
    /// byte of the name's hash. At most half full.
    slots: Vec<u32>,
    records: Vec<Record>,
    /// Each node's full state from its last report (for views other than placement's).
    states: Vec<NodeState>,
    /// Every node's name, end to end, with the names of removed nodes left in place until
    /// they make up half of it.
    names: Vec<u8>,
    /// Bytes of `names` that belong to removed nodes.
    garbage: usize,
}

/// Touches `p`'s cache line ahead of use. Only a hint: any address is fine.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults and has no visible effect, whatever the address; SSE
        // is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn tag(hash: u64) -> u32 {
    // The top byte: the slot position comes from the low bits.
    #[allow(clippy::cast_possible_truncation)]
    let t = (hash >> 56) as u32;
    t
}

/// Whether two names are equal; short ones (most) compared as two overlapping words, without a
/// call to `memcmp`.
#[inline(always)]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    if (8..=16).contains(&n) {
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else {
        a == b
    }
}

impl Index {
    pub(super) fn new(hash: NameHash) -> Self {
        Self {
            hash,
            slots: vec![0; 64],
            records: Vec::new(),
            states: Vec::new(),
            names: Vec::new(),
            garbage: 0,
        }
    }

    fn home(&self, hash: u64) -> usize {
        // The low bits pick the slot; the slot count is a power of two.
        #[allow(clippy::cast_possible_truncation)]
        let h = hash as usize;
        h & (self.slots.len() - 1)
    }

    fn name_of(&self, r: &Record) -> &[u8] {
        let at = r.name_at as usize;
        self.names
            .get(at..at + r.name_len as usize)
            .unwrap_or_default()
    }

    /// The record of `name`, found from its `hash`.
    fn probe(&self, hash: u64, name: &[u8]) -> Option<usize> {
        self.slot_of(hash, name).map(|i| record_of(self.slots[i]))
    }

    /// The slot of `name`, found from its `hash`.
    fn slot_of(&self, hash: u64, name: &[u8]) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if s >> 24 == tag(hash) && same_name(self.name_of(&self.records[record_of(s)]), name) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The position of `name`'s record.
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        self.probe(self.hash.of(name.as_bytes()), name.as_bytes())
    }

    /// Node `r` at `now` (from [`Clock::at`]).
    pub(super) fn snapshot(&self, r: usize, now: i64) -> NodeSnapshot {
        let rec = &self.records[r];
        NodeSnapshot {
            state: self.states[r],
            admission: rec.admission,
            age: rec.age(now),
        }
    }

    /// Ages of all nodes at `now`.
    pub(super) fn ages(&self, now: i64) -> impl Iterator<Item = Duration> + '_ {
        self.records.iter().map(move |r| r.age(now))
    }

    /// Number of nodes.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Stores node `r`'s new state, received at `received`; `admission` maps its previous
    /// admission to the new one.
    pub(super) fn update(
        &mut self,
        r: usize,
        state: NodeState,
        received: i64,
        admission: impl FnOnce(Admission) -> Admission,
    ) {
        let rec = &mut self.records[r];
        rec.admission = admission(rec.admission);
        rec.place = Placement::of(&state);
        rec.received = received;
        self.states[r] = state;
    }

    /// Adds node `name`, not in the index yet (the caller holds its shard's lock, so no one else
    /// adds the same name), and returns its record's position; `None` when the index is full
    /// ([`MAX_NODES`]) or the names outgrow 4 GiB.
    pub(super) fn insert(
        &mut self,
        name: &str,
        state: NodeState,
        mut record: Record,
    ) -> Option<usize> {
        let at = u32::try_from(self.names.len()).ok()?;
        let len = u32::try_from(name.len()).ok()?;
        u32::try_from(self.names.len() + name.len()).ok()?;
        if self.records.len() >= MAX_NODES {
            return None;
        }
        if (self.records.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let r = self.records.len();
        record.name_at = at;
        record.name_len = len;
        self.names.extend_from_slice(name.as_bytes());
        self.records.push(record);
        self.states.push(state);
        self.place(self.hash.of(name.as_bytes()), r);
        Some(r)
    }

    fn place(&mut self, hash: u64, r: usize) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (tag(hash) << 24) | slot_position(r);
    }

    /// Removes node `name`; returns whether it was there. The last record moves into the
    /// removed one's position; the names are repacked once half their bytes are garbage, so
    /// removals cost amortised O(name) and memory stays within twice the live names.
    pub(super) fn remove(&mut self, name: &str) -> bool {
        let Some(i) = self.slot_of(self.hash.of(name.as_bytes()), name.as_bytes()) else {
            return false;
        };
        let r = record_of(self.slots[i]);
        self.unslot(i);
        let last = self.records.len() - 1;
        if r != last {
            let hash = self.hash.of(self.name_of(&self.records[last]));
            let mask = self.slots.len() - 1;
            let mut j = self.home(hash);
            // Every record has a slot on its probe run, before any empty slot.
            while self.slots[j] != 0 && record_of(self.slots[j]) != last {
                j = (j + 1) & mask;
            }
            self.slots[j] = (self.slots[j] & 0xff00_0000) | slot_position(r);
        }
        self.garbage += self.records[r].name_len as usize;
        self.records.swap_remove(r);
        self.states.swap_remove(r);
        if self.garbage * 2 > self.names.len() {
            self.repack();
        }
        true
    }

    /// Empties slot `hole`, moving later slots of its probe run back into it where their home
    /// allows, so every name stays reachable from its home without tombstones.
    fn unslot(&mut self, mut hole: usize) {
        let mask = self.slots.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.home(self.hash.of(self.name_of(&self.records[record_of(s)])));
            // The entry may fill the hole when the hole lies between its home and `j`.
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }

    /// Packs the live names end to end again.
    fn repack(&mut self) {
        let mut names = Vec::with_capacity(self.names.len() - self.garbage);
        for rec in &mut self.records {
            let at = rec.name_at as usize;
            let bytes = self
                .names
                .get(at..at + rec.name_len as usize)
                .unwrap_or_default();
            // Smaller than the arena it came from, whose offsets fit 32 bits.
            #[allow(clippy::cast_possible_truncation)]
            let new_at = names.len() as u32;
            rec.name_at = new_at;
            names.extend_from_slice(bytes);
        }
        self.names = names;
        self.garbage = 0;
    }

    fn grow(&mut self) {
        self.slots = vec![0; self.slots.len() * 2];
        for r in 0..self.records.len() {
            let hash = self.hash.of(self.name_of(&self.records[r]));
            self.place(hash, r);
        }
    }

    /// Calls `f(i, record)` for each of `names` in order, `None` for a name never seen. Works in
    /// batches: hash the batch and prefetch each name's home slot, then read the slots and
    /// prefetch the records they point to, then check each match.
    pub(super) fn lookup_each<S: NameSource + ?Sized>(
        &self,
        names: &S,
        mut f: impl FnMut(usize, Option<&Record>),
    ) {
        let mut hashes = [0u64; BATCH];
        let mut candidates = [usize::MAX; BATCH];
        let n = names.count();
        let mask = self.slots.len() - 1;
        let mut base = 0;
        while base < n {
            let len = BATCH.min(n - base);
            for (j, h) in hashes[..len].iter_mut().enumerate() {
                *h = self.hash.of(names.name_bytes(base + j));
                prefetch(self.slots.as_ptr().wrapping_add(self.home(*h)));
            }
            for (c, h) in candidates[..len].iter_mut().zip(&hashes[..len]) {
                // The first slot from home with this tag, if any before an empty one; almost
                // always the home slot itself, at most half full.
                *c = usize::MAX;
                let mut i = self.home(*h);
                loop {
                    let s = self.slots[i];
                    if s == 0 {
                        break;
                    }
                    if s >> 24 == tag(*h) {
                        *c = record_of(s);
                        prefetch(self.records.as_ptr().wrapping_add(*c));
                        break;
                    }
                    i = (i + 1) & mask;
                }
            }
            for j in 0..len {
                let name = names.name_bytes(base + j);
                let c = candidates[j];
                let found = match self.records.get(c) {
                    None => None,
                    Some(r) if same_name(self.name_of(r), name) => Some(c),
                    // Another name with the same tag sat first: probe on.
                    Some(_) => self.probe(hashes[j], name),
                };
                f(base + j, found.map(|r| &self.records[r]));
            }
            base += len;
        }
    }
}

fn record_of(slot: u32) -> usize {
    (slot & 0x00ff_ffff) as usize - 1
}

/// The low 24 bits of a slot for record `r`.
fn slot_position(r: usize) -> u32 {
    // `r` < MAX_NODES, so `r + 1` fits 24 bits.
    #[allow(clippy::cast_possible_truncation)]
    let pos = (r + 1) as u32;
    pos
}

#[cfg(test)]
mod tests;
