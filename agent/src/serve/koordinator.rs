//! colo's numbers in the shape of Koordinator's `NodeMetric` (`slo.koordinator.sh/v1alpha1`),
//! so a koord-scheduler user can read them: the whole node's usage (every process: online
//! services, batch VMs, the system), and colo's batch budget as `prodReclaimableMetric` (what
//! online ("Prod") work leaves unused, after the headroom). Served by the agent's HTTP listener
//! (`metrics.listen`) at [`PATH`] whether or not `scheduler.endpoint` is set, from the QoS loop's
//! latest snapshot; publishing it to an API server is not done.
//!
//! ```json
//! {"apiVersion":"slo.koordinator.sh/v1alpha1","kind":"NodeMetric",
//!  "metadata":{"name":"node-1","annotations":{"colo.io/interference-score":"12","colo.io/refuses-batch":"false"}},
//!  "spec":{},
//!  "status":{"updateTime":"2026-11-28T19:30:00Z",
//!            "nodeMetric":{"nodeUsage":{"resources":{"cpu":"9250m","memory":"32212254720"}}},
//!            "prodReclaimableMetric":{"resource":{"resources":{"cpu":"8400m","memory":"40802189312"}}}}}
//! ```

use serde_json::{Value, json};

use crate::qos::{LatestSnapshot, NodeSnapshot};

/// Where the agent serves the NodeMetric view.
pub const PATH: &str = "/koordinator/nodemetric";

/// Koordinator's API version for NodeMetric.
pub const API_VERSION: &str = "slo.koordinator.sh/v1alpha1";

fn resources(cpu_millicores: u64, memory_bytes: u64) -> Value {
    json!({ "resources": { "cpu": format!("{cpu_millicores}m"), "memory": memory_bytes.to_string() } })
}

/// The NodeMetric object for `snapshot`: `status.updateTime` from the report's timestamp (RFC
/// 3339, seconds, UTC, as `metav1.Time`), `status.nodeMetric.nodeUsage` = the whole node's busy
/// CPU and memory in use, `status.prodReclaimableMetric.resource` = colo's reclaimable capacity.
/// colo's interference score and batch verdict ride along as annotations.
#[must_use]
pub fn node_metric(snapshot: &NodeSnapshot) -> Value {
    let report = &snapshot.report;
    let usage = snapshot.node_usage;
    let reclaim = report.reclaimable.unwrap_or_default();
    let updated = rfc3339_seconds(report.timestamp_unix_ms.max(0) / 1000);
    let score = report.interference.as_ref().map_or(f64::NAN, |i| i.score);
    let score = if score.is_finite() {
        format!("{score:.0}")
    } else {
        "unknown".to_owned()
    };
    json!({
        "apiVersion": API_VERSION,
        "kind": "NodeMetric",
        "metadata": {
            "name": report.node_name,
            "annotations": {
                "colo.io/interference-score": score,
                "colo.io/refuses-batch": report.refuses_batch.to_string(),
            },
        },
        "spec": {},
        "status": {
            "updateTime": updated.to_string(),
            "nodeMetric": {
                "nodeUsage": resources(usage.cpu_millicores, usage.memory_bytes),
            },
            "prodReclaimableMetric": {
                "resource": resources(reclaim.cpu_millicores, reclaim.memory_bytes),
            },
        },
    })
}

/// `2026-11-28T19:30:00Z` for Unix time `secs` (UTC, whole seconds, as `metav1.Time` writes
/// it). Days to a civil date by Howard Hinnant's `civil_from_days`.
fn rfc3339_seconds(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `GET` [`PATH`]: the NodeMetric of the QoS loop's latest snapshot, or 503 before the first
/// one. Merge into the agent's HTTP router.
pub fn routes(latest: LatestSnapshot) -> axum::Router {
    axum::Router::new().route(
        PATH,
        axum::routing::get(move || {
            let snapshot = latest.get();
            async move {
                match snapshot {
                    Some(r) => {
                        axum::response::IntoResponse::into_response(axum::Json(node_metric(&r)))
                    }
                    None => axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "no node snapshot yet: the QoS loop has not published one (it does every \
                         second once running; see the agent's log if it did not start)\n",
                    )),
                }
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use colo_proto::report::{Interference, NodeReport, Resources};

    #[test]
    fn node_metric_has_koordinators_shape() {
        let report = NodeReport {
            node_name: "node-1".into(),
            timestamp_unix_ms: 1_795_894_200_123,
            online_usage: Some(Resources {
                cpu_millicores: 6_000,
                memory_bytes: 20 << 30,
            }),
            offline_usage: Some(Resources {
                cpu_millicores: 1_000,
                memory_bytes: 4 << 30,
            }),
            reclaimable: Some(Resources {
                cpu_millicores: 8_400,
                memory_bytes: 38 << 30,
            }),
            interference: Some(Interference {
                score: 12.4,
                ..Interference::default()
            }),
            ..NodeReport::default()
        };
        // The whole node: more than online + offline (undeclared services, the system).
        let v = node_metric(&NodeSnapshot {
            report,
            node_usage: Resources {
                cpu_millicores: 9_250,
                memory_bytes: 30 << 30,
            },
        });
        assert_eq!(
            v.to_string(),
            r#"{"apiVersion":"slo.koordinator.sh/v1alpha1","kind":"NodeMetric","metadata":{"annotations":{"colo.io/interference-score":"12","colo.io/refuses-batch":"false"},"name":"node-1"},"spec":{},"status":{"nodeMetric":{"nodeUsage":{"resources":{"cpu":"9250m","memory":"32212254720"}}},"prodReclaimableMetric":{"resource":{"resources":{"cpu":"8400m","memory":"40802189312"}}},"updateTime":"2026-11-28T19:30:00Z"}}"#
        );
    }

    #[test]
    fn update_time_is_rfc3339_utc() {
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_seconds(1_795_894_200), "2026-11-28T19:30:00Z");
        assert_eq!(rfc3339_seconds(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn a_report_without_numbers_still_has_the_shape() {
        let v = node_metric(&NodeSnapshot::default());
        assert_eq!(v["status"]["updateTime"], "1970-01-01T00:00:00Z");
        assert_eq!(
            v["metadata"]["annotations"]["colo.io/interference-score"],
            "unknown"
        );
        assert_eq!(
            v["status"]["nodeMetric"]["nodeUsage"]["resources"]["cpu"],
            "0m"
        );
    }

    #[tokio::test]
    async fn served_over_http_from_the_latest_snapshot() {
        use colo_scheduler::http_client::HttpConnection;
        let latest = LatestSnapshot::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, routes(latest.clone())).into_future());
        let mut c = HttpConnection::connect(addr).await.unwrap();
        assert_eq!(c.get(PATH).await.unwrap().status, 503);
        latest.publish(NodeSnapshot {
            report: NodeReport {
                node_name: "node-7".into(),
                ..NodeReport::default()
            },
            node_usage: Resources {
                cpu_millicores: 4_000,
                memory_bytes: 1 << 30,
            },
        });
        let r = c.get(PATH).await.unwrap();
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["metadata"]["name"], "node-7");
        assert_eq!(v["kind"], "NodeMetric");
        assert_eq!(
            v["status"]["nodeMetric"]["nodeUsage"]["resources"]["cpu"],
            "4000m"
        );
        server.abort();
    }
}
