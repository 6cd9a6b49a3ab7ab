//! Eviction order and rate.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
