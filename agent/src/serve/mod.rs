//! What the agent serves: the gRPC API ([`api`], over a Unix socket and TLS through
//! [`server`]), the node reports streamed to colo-scheduler ([`reporter`]), the Koordinator
//! NodeMetric view ([`koordinator`]) and the Prometheus metrics ([`metrics`]). It reads the
//! job side and the QoS loop; neither knows it.

pub mod api;
pub mod koordinator;
pub mod metrics;
pub mod reporter;
pub mod server;
