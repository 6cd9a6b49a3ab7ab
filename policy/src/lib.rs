//! colo's decision engine: [`NodeSample`] in, [`Action`]s out, and node scoring for placement.
//! Pure: no I/O, no clock, no threads, so the agent, the scheduler and the simulator run the very
//! same decisions.
//!
//! The QoS ladder, cheapest layer first: SCHED_IDLE for vCPU threads, the offline group's CPU
//! quota, per-VM vCPU quotas, the group's IO throttle, per-VM IO buckets, pause, evict. Each
//! resource (CPU, IO) squeezes fast when a signal crosses its `high` threshold and releases one
//! step per `release_cooldown` once every signal has been below `low` for `release_after`.
//! Memory evicts. See `docs/policy.md`.

mod action;
mod engine;
mod order;
mod params;
mod prefetch;
mod resource;
mod rules;
mod sample;
mod signals;
mod state;
mod step;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testing;

pub mod scoring;

pub use action::{Action, Direction, MemoryLimitKind, Reason, Rule, Signal};
pub use engine::{Engine, NodeView, VmView};
pub use resource::Resource;
pub use sample::{
    IoLimit, NodeSample, NodeStats, OnlineSample, PsiSample, VmId, VmLimits, VmRunState, VmSample,
};

/// Version of the decision logic, reported by agents so mixed fleets can be told apart.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
