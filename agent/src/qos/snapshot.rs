//! The node's latest snapshot, published by the QoS loop every second whether or not reports go
//! to colo-scheduler: the `NodeReport` (batch budget, interference score, batch verdict with
//! hysteresis) and the whole node's usage. Readers: NodeStatus (so `coloctl node-attributes` and
//! `coloctl health-check` serve YARN), the Koordinator NodeMetric view, and the reporter.
//!
//! Publishing replaces one `Arc` under a lock held for a pointer swap; readers clone the `Arc`.

use std::sync::{Arc, RwLock};

use colo_proto::report::{NodeReport, Resources};

/// What the loop knows about the node after one summary period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    /// The report colo-scheduler gets (without the reporter's sequence number).
    pub report: NodeReport,
    /// Everything running on the node (online services, batch VMs, the system itself): busy
    /// CPU in millicores and memory in use (total − available), as Koordinator's
    /// `NodeMetric.status.nodeMetric.nodeUsage` means it.
    pub node_usage: Resources,
}

/// The latest [`NodeSnapshot`]; empty until the loop's first summary. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LatestSnapshot(Arc<RwLock<Option<Arc<NodeSnapshot>>>>);

impl LatestSnapshot {
    /// Replaces the snapshot.
    pub fn publish(&self, snapshot: NodeSnapshot) {
        let fresh = Arc::new(snapshot);
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
    }

    /// The latest snapshot, if the loop has published one.
    #[must_use]
    pub fn get(&self) -> Option<Arc<NodeSnapshot>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_last_published_snapshot() {
        let latest = LatestSnapshot::default();
        assert!(latest.get().is_none());
        let reader = latest.clone();
        for name in ["a", "b"] {
            latest.publish(NodeSnapshot {
                report: NodeReport {
                    node_name: name.into(),
                    ..NodeReport::default()
                },
                ..NodeSnapshot::default()
            });
        }
        assert_eq!(reader.get().unwrap().report.node_name, "b");
    }
}
