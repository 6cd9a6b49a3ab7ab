//! colo's QoS benchmarks: an open-loop HTTP load generator ([`loadgen`]), the headline benchmark
//! ([`headline`]: nginx beside offline MicroVMs, alone / unlimited / static weight / colo), the
//! reaction benchmark ([`reaction`]), the thesis benchmark ([`thesis`]: PostgreSQL beside IO- and
//! memory-heavy offline jobs in containers and MicroVMs) and the agent's overhead ([`overhead`]), with medians and
//! bootstrap intervals ([`stats`]); a run counts only when the online service served its load
//! ([`validity`]). The `colo-bench` binary drives them; see docs/qos.md.

pub mod headline;
pub mod host;
pub mod loadgen;
pub mod overhead;
pub mod reaction;
pub mod services;
pub mod stats;
pub mod thesis;
pub mod validity;
