//! The placement index: what placement reads of every node (name, state, admission, receipt
//! time) in one dense array, found by name through a compact open-addressing table.
//!
//! A filter or prioritize call looks up thousands of names. Through a map per shard each lookup
//! waits on two or three cache misses in turn; here the slots (8 bytes each) and the records
//! (two cache lines each) are plain arrays, so [`Index::lookup_each`] can hash a batch of names,
//! prefetch their slots, then their records, and keep many misses in flight at once.

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use colo_policy::scoring::{Admission, NodeState};

use super::{NameHash, NameKey, NodeSnapshot};

/// Names looked up together by [`Index::lookup_each`]: enough to overlap many cache misses,
/// few enough that the batch's slots and records stay in L1.
const BATCH: usize = 32;

/// One node as placement reads it. Exactly two cache lines, aligned, so a lookup touches those
/// two and nothing else.
#[derive(Debug)]
#[repr(C, align(128))]
pub(super) struct Record {
    /// The node's name (checked on every match).
    pub(super) name: NameKey,
    /// Capacity, batch budget, batch usage and interference from the last report.
    pub(super) state: NodeState,
    /// Whether the node takes batch work (with hysteresis).
    pub(super) admission: Admission,
    /// When the last report was received, as [`Clock::at`] gives it.
    pub(super) received: i64,
    /// Whether the name encodes in JSON as itself between quotes (checked once, at insert), so
    /// an answer can copy it without looking at it again.
    pub(super) plain_name: bool,
}

impl Record {
    /// The node at `now` (from [`Clock::at`]).
    pub(super) fn snapshot(&self, now: i64) -> NodeSnapshot {
        NodeSnapshot {
            state: self.state,
            admission: self.admission,
            age: Duration::from_nanos(u64::try_from(now - self.received).unwrap_or(0)),
        }
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

/// Name → record. Nodes are never removed, so records only grow and a record's position is the
/// node's for the life of the table.
#[derive(Debug)]
pub(super) struct Index {
    hash: NameHash,
    /// Linear probing; `0` is empty, else `tag << 32 | (record + 1)` where the tag is the top
    /// half of the name's hash. At most half full.
    slots: Vec<u64>,
    records: Vec<Record>,
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

fn tag(hash: u64) -> u64 {
    hash >> 32
}

impl Index {
    pub(super) fn new(hash: NameHash) -> Self {
        Self {
            hash,
            slots: vec![0; 64],
            records: Vec::new(),
        }
    }

    fn home(&self, hash: u64) -> usize {
        // The low bits pick the slot; the slot count is a power of two.
        #[allow(clippy::cast_possible_truncation)]
        let h = hash as usize;
        h & (self.slots.len() - 1)
    }

    /// The record of `name`, found from its `hash`.
    fn probe(&self, hash: u64, name: &str) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if s >> 32 == tag(hash) {
                let r = record_of(s);
                if self.records[r].name.as_str() == name {
                    return Some(r);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The position of `name`'s record.
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        self.probe(self.hash.hash_one(name), name)
    }

    pub(super) fn record(&self, r: usize) -> &Record {
        &self.records[r]
    }

    pub(super) fn record_mut(&mut self, r: usize) -> &mut Record {
        &mut self.records[r]
    }

    pub(super) fn records(&self) -> &[Record] {
        &self.records
    }

    /// Adds a node that is not in the index yet (the caller holds its shard's lock, so no one
    /// else adds the same name) and returns its record's position.
    pub(super) fn insert(&mut self, record: Record) -> usize {
        if (self.records.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let r = self.records.len();
        let hash = self.hash.hash_one(record.name.as_str());
        self.records.push(record);
        self.place(hash, r);
        r
    }

    fn place(&mut self, hash: u64, r: usize) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (tag(hash) << 32) | (r as u64 + 1);
    }

    fn grow(&mut self) {
        self.slots = vec![0; self.slots.len() * 2];
        for r in 0..self.records.len() {
            let hash = self.hash.hash_one(self.records[r].name.as_str());
            self.place(hash, r);
        }
    }

    /// Calls `f(i, record)` for each of `names` in order, `None` for a name never seen. Works in
    /// batches: hash the batch and prefetch each name's home slot, then read the slots and
    /// prefetch the records they point to, then check each match.
    pub(super) fn lookup_each<N: std::ops::Deref<Target = str>>(
        &self,
        names: &[N],
        mut f: impl FnMut(usize, Option<&Record>),
    ) {
        let mut hashes = [0u64; BATCH];
        let mut candidates = [usize::MAX; BATCH];
        for (b, batch) in names.chunks(BATCH).enumerate() {
            for (h, name) in hashes.iter_mut().zip(batch) {
                *h = self.hash.hash_one(&**name);
                prefetch(self.slots.as_ptr().wrapping_add(self.home(*h)));
            }
            for (c, h) in candidates.iter_mut().zip(&hashes[..batch.len()]) {
                // The first slot from home with this tag, if any before an empty one; almost
                // always the home slot itself, at most half full.
                *c = usize::MAX;
                let mask = self.slots.len() - 1;
                let mut i = self.home(*h);
                loop {
                    let s = self.slots[i];
                    if s == 0 {
                        break;
                    }
                    if s >> 32 == tag(*h) {
                        *c = record_of(s);
                        let p = self.records.as_ptr().wrapping_add(*c);
                        prefetch(p);
                        prefetch(p.cast::<u8>().wrapping_add(64));
                        break;
                    }
                    i = (i + 1) & mask;
                }
            }
            for (j, name) in batch.iter().enumerate() {
                let c = candidates[j];
                let found = if c == usize::MAX {
                    None
                } else if self.records[c].name.as_str() == &**name {
                    Some(c)
                } else {
                    // Another name with the same tag sat first: probe on.
                    self.probe(hashes[j], name)
                };
                f(b * BATCH + j, found.map(|r| &self.records[r]));
            }
        }
    }
}

fn record_of(slot: u64) -> usize {
    // Slots hold record positions below the record count (a usize), plus one.
    #[allow(clippy::cast_possible_truncation)]
    let r = (slot & 0xffff_ffff) as usize;
    r - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, cpu: u64) -> Record {
        let mut state = NodeState::default();
        state.capacity.cpu_millicores = cpu;
        Record {
            name: NameKey::new(name),
            state,
            admission: Admission::Accepting,
            received: 0,
            plain_name: true,
        }
    }

    #[test]
    fn finds_every_name_through_growth_and_batches() {
        assert_eq!(std::mem::size_of::<Record>(), 128);
        let mut ix = Index::new(NameHash { seed: 3 });
        let long = |i: usize| format!("gke-cluster-default-pool-{i:08}-long-name");
        for i in 0..3_000u64 {
            let n = usize::try_from(i).unwrap();
            let name = if i % 3 == 0 {
                long(n)
            } else {
                format!("node-{i}")
            };
            assert_eq!(ix.insert(record(&name, i)), n);
        }
        assert!(ix.slots.len() >= 6_000);
        let mut names: Vec<String> = (0..3_000)
            .map(|i| {
                if i % 3 == 0 {
                    long(i)
                } else {
                    format!("node-{i}")
                }
            })
            .collect();
        names.push("node-3000".into());
        names.push(String::new());
        names.push("node-1".into());
        let mut seen = 0;
        ix.lookup_each(&names, |i, r| {
            assert_eq!(i, seen);
            seen += 1;
            assert_eq!(
                r.map(|r| r.name.as_str()),
                ix.find(&names[i]).map(|p| ix.records[p].name.as_str())
            );
            match i {
                3_000 | 3_001 => assert!(r.is_none()),
                3_002 => assert_eq!(r.unwrap().state.capacity.cpu_millicores, 1),
                _ => assert_eq!(r.unwrap().state.capacity.cpu_millicores, i as u64),
            }
        });
        assert_eq!(seen, names.len());
    }

    #[test]
    fn ages_count_across_the_clocks_epoch() {
        let c = Clock::new();
        let now = Instant::now();
        let Some(before) = now.checked_sub(Duration::from_secs(100)) else {
            return;
        };
        let old = Record {
            received: c.at(before),
            ..record("a", 1)
        };
        assert_eq!(old.snapshot(c.at(now)).age, Duration::from_secs(100));
        let new = Record {
            received: c.at(now),
            ..record("a", 1)
        };
        assert_eq!(new.snapshot(c.at(before)).age, Duration::ZERO);
    }

    #[test]
    fn same_tag_names_are_told_apart() {
        let mut ix = Index::new(NameHash { seed: 0 });
        for i in 0..31 {
            ix.insert(record(&format!("n{i}"), i));
        }
        // Give every slot the tag of "n5": its lookup then meets other nodes' slots first and
        // must tell them apart by name.
        let t = tag(ix.hash.hash_one("n5"));
        for s in &mut ix.slots {
            if *s != 0 {
                *s = (t << 32) | (*s & 0xffff_ffff);
            }
        }
        let names = ["n5", "n5", "missing"];
        let mut found = Vec::new();
        ix.lookup_each(&names, |_, r| {
            found.push(r.map(|r| r.state.capacity.cpu_millicores));
        });
        assert_eq!(found, [Some(5), Some(5), None]);
        assert_eq!(ix.find("n5"), Some(5));
    }
}
