//! colo-scheduler: receives node reports and answers the cluster scheduler (Kubernetes
//! scheduler extender, YARN signals).

/// Default age after which a node's last report is stale.
pub const DEFAULT_STALENESS_SECS: u64 = 180;
