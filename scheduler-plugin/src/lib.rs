//! colo-scheduler: receives node reports from colo agents and answers the cluster scheduler.
//!
//! - [`ingest`]: the gRPC service agents stream `NodeReport`s to (`colo.report.v1`);
//! - [`table`]: the in-memory node table (last report per node, sequence tracking, staleness,
//!   batch admission with hysteresis);
//! - [`k8s`]: the Kubernetes scheduler extender (filter, prioritize, preempt) over HTTP;
//! - [`server`]: both servers with graceful shutdown; [`metrics`]: Prometheus `/metrics`.
//!
//! The decisions themselves are `colo_policy::scoring`, shared with the agent and the simulator.

pub mod config;
pub mod http_client;
pub mod ingest;
pub mod k8s;
pub mod metrics;
pub mod server;
pub mod table;

pub use config::{BatchPodSelector, DEFAULT_STALE_AFTER, SchedulerConfig, StaleNodes};
pub use server::{Running, ServeError, start};
pub use table::NodeTable;
