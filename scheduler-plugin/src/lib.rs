//! colo-scheduler: receives node reports from colo agents and answers the cluster scheduler.
//!
//! - [`ingest`]: the gRPC service agents stream `NodeReport`s to (`colo.report.v1`);
//! - [`table`]: the in-memory node table (last report per node, sequence tracking, staleness,
//!   batch admission with hysteresis);
//! - [`k8s`]: the Kubernetes scheduler extender (filter, prioritize, preempt) over HTTP, on
//!   `gojson`, Go-compatible JSON in a module of its own;
//! - [`server`]: both servers with graceful shutdown; [`metrics`]: Prometheus `/metrics`;
//! - [`listen`], [`tls`], [`identity`]: plain or mutual-TLS listeners, the handshake deadline,
//!   and the names a client certificate gives; [`report_check`]: what a report must be before
//!   the table stores it. Every bound lives in [`config::Limits`].
//!
//! The decisions themselves are `colo_policy::scoring`, shared with the agent and the simulator.

pub mod config;
mod gojson;
pub mod http_client;
mod http_server;
pub mod identity;
pub mod ingest;
pub mod k8s;
pub mod listen;
pub mod metrics;
pub mod report_check;
pub mod server;
pub mod table;
pub mod tls;

pub use config::{BatchPodSelector, DEFAULT_STALE_AFTER, Limits, SchedulerConfig, StaleNodes};
pub use listen::Listener;
pub use server::{Running, ServeError, TlsReloader, start};
pub use table::NodeTable;
pub use tls::{Port, ServerTls, TlsFiles};
