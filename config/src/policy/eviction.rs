//! Eviction order and rate.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::Checker;
use crate::units::duration;

/// A sort key for choosing the VM to pause or evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvictionKey {
    /// Lower QoS-class `eviction_rank` first.
    EvictionRank,
    /// Lower job priority first.
    Priority,
    /// Most recently started first (least work lost).
    YoungestFirst,
    /// Longest running first.
    OldestFirst,
    /// Largest memory footprint first (frees most memory).
    LargestMemoryFirst,
}

/// How VMs are chosen and paced for pause and eviction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Eviction {
    /// Sort keys, most significant first; ties after all keys go to the lower VM id.
    pub order: Vec<EvictionKey>,
    /// Most VMs evicted in one loop tick.
    pub max_per_step: u32,
    /// Least time between two evictions (lets memory and load settle).
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub cooldown: Duration,
}

impl Default for Eviction {
    fn default() -> Self {
        Self {
            order: vec![
                EvictionKey::EvictionRank,
                EvictionKey::Priority,
                EvictionKey::YoungestFirst,
            ],
            max_per_step: 1,
            cooldown: Duration::from_secs(5),
        }
    }
}

impl Eviction {
    /// Reports this section's violations to `c` (the ranges and cross-field rules its types
    /// cannot express).
    pub(super) fn check(&self, c: &mut Checker) {
        let e = self;
        for (idx, key) in e.order.iter().enumerate() {
            if e.order[..idx].contains(key) {
                let name = eviction_key_name(*key);
                c.invalid(
                    &format!("eviction.order[{idx}]"),
                    name,
                    "each sort key may appear once",
                    "distinct keys",
                );
            }
        }
        use EvictionKey::{OldestFirst, YoungestFirst};
        if let (Some(y), Some(o)) = (
            e.order.iter().position(|k| *k == YoungestFirst),
            e.order.iter().position(|k| *k == OldestFirst),
        ) {
            let (later, earlier) = if y > o { (y, o) } else { (o, y) };
            c.conflict(
                &format!("eviction.order[{later}]"),
                eviction_key_name(e.order[later]),
                &format!("eviction.order[{earlier}]"),
                "`youngest_first` and `oldest_first` contradict each other: keep one".to_owned(),
            );
        }
        if e.max_per_step == 0 {
            c.invalid(
                "eviction.max_per_step",
                0,
                "zero would never evict, even at the memory limit",
                "1 or more",
            );
        }
    }
}

fn eviction_key_name(k: EvictionKey) -> &'static str {
    use EvictionKey as K;
    match k {
        K::EvictionRank => "eviction_rank",
        K::Priority => "priority",
        K::YoungestFirst => "youngest_first",
        K::OldestFirst => "oldest_first",
        K::LargestMemoryFirst => "largest_memory_first",
    }
}
