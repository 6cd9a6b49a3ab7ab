//! What YARN's NodeManager reads from colo: node attributes (`coloctl node-attributes`, run by
//! the script-based node attributes provider) and a health verdict (`coloctl health-check`, run
//! by the health checker). The formatting is a pure function of the agent's latest `NodeReport`
//! (NodeStatus carries it); the two commands fetch it and never fail: they print what YARN should
//! see and exit 0 also when the agent is down. See docs/yarn.md for the `yarn-site.xml` side and
//! packaging/yarn/ for the wrapper scripts.
//!
//! Attribute names must match `[0-9a-zA-Z][0-9a-zA-Z-_]*` (YARN's `NodeLabelUtil`: no dots, and
//! no `/`, since the NodeManager adds the `nm.yarn.io` prefix itself), and so must values, or the
//! NodeManager rejects the whole script output. Hence `colo_interference`, integer values.

use std::fmt::Write as _;

use colo_proto::agent as pb;
use colo_proto::report::NodeReport;

use super::connect::{ConnectArgs, connect};
use super::{CliError, Done};

/// Interference score (0–100) from which a node that still takes batch work is `medium`
/// rather than `low`. A node that refuses batch work is `high`.
pub const DEFAULT_MEDIUM_FROM: f64 = 30.0;

/// The `colo_interference` level of a node: `high` when it refuses batch work (the agent's verdict,
/// with hysteresis), `medium` from `medium_from`, else `low`.
#[must_use]
pub fn interference_level(report: &NodeReport, medium_from: f64) -> &'static str {
    let score = report.interference.as_ref().map_or(f64::NAN, |i| i.score);
    if report.refuses_batch || score.is_nan() {
        "high"
    } else if score >= medium_from {
        "medium"
    } else {
        "low"
    }
}

/// The lines `coloctl node-attributes` prints, one attribute per line:
///
/// ```text
/// NODE_ATTRIBUTE:colo_interference,STRING,low
/// NODE_ATTRIBUTE:colo_interference_score,STRING,12
/// NODE_ATTRIBUTE:colo_reclaimable_millicores,STRING,8400
/// NODE_ATTRIBUTE:colo_reclaimable_memory_mb,STRING,40960
/// ```
///
/// The NodeManager publishes them as `nm.yarn.io/colo_interference` and so on. Without a report
/// (the agent is not measuring yet, or cannot be reached) only `colo_interference,STRING,unknown`
/// is printed, so placement constraints asking for `low` skip the node.
#[must_use]
pub fn node_attribute_lines(report: Option<&NodeReport>, medium_from: f64) -> String {
    let mut out = String::new();
    let Some(r) = report else {
        out.push_str("NODE_ATTRIBUTE:colo_interference,STRING,unknown\n");
        return out;
    };
    let score = r.interference.as_ref().map_or(f64::NAN, |i| i.score);
    let reclaim = r.reclaimable.unwrap_or_default();
    let attr = |out: &mut String, name: &str, value: &dyn std::fmt::Display| {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "NODE_ATTRIBUTE:{name},STRING,{value}");
    };
    attr(
        &mut out,
        "colo_interference",
        &interference_level(r, medium_from),
    );
    if score.is_finite() {
        // Rounded into 0..=100, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let s = score.clamp(0.0, 100.0).round() as u8;
        attr(&mut out, "colo_interference_score", &s);
    }
    attr(
        &mut out,
        "colo_reclaimable_millicores",
        &reclaim.cpu_millicores,
    );
    attr(
        &mut out,
        "colo_reclaimable_memory_mb",
        &(reclaim.memory_bytes >> 20),
    );
    out
}

/// The line `coloctl health-check` prints. It starts with `ERROR` while the node refuses batch
/// work (the agent's verdict, which has hysteresis, so the node does not flap between healthy and
/// unhealthy); the NodeManager then reports the node unhealthy and the ResourceManager stops
/// placing containers there. The command always exits 0: the NodeManager ignores the output of a
/// script that exits non-zero. Without a report the node stays healthy (`WARN ...`): an agent
/// that is down must not take the node out of YARN.
#[must_use]
pub fn health_check_line(report: Option<&NodeReport>) -> String {
    let Some(r) = report else {
        return "WARN colo: no node report from colo-agent; not judging this node\n".to_owned();
    };
    let score = r.interference.as_ref().map_or(f64::NAN, |i| i.score);
    if r.refuses_batch {
        format!(
            "ERROR colo: online interference score {score:.0}/100, this node takes no batch work \
             until it falls below the policy's scoring.filter.accept_below\n"
        )
    } else {
        format!("OK colo: online interference score {score:.0}/100, batch work welcome\n")
    }
}

/// The line `coloctl health-check` prints when the agent cannot be reached (or refused to
/// answer): `WARN` (the node stays healthy: an agent outage must not take capacity out of YARN),
/// or `ERROR` when the operator asked for it with `--unhealthy-when-down`.
#[must_use]
pub fn agent_down_line(error: &CliError, unhealthy_when_down: bool) -> String {
    // One line: the NodeManager shows the first line of the output as the node's health report.
    let why = error.to_string().replace(['\n', '\r'], " ");
    if unhealthy_when_down {
        format!(
            "ERROR colo: {why}; marked unhealthy until colo-agent answers (--unhealthy-when-down)\n"
        )
    } else {
        format!("WARN colo: {why}; not judging this node\n")
    }
}

/// Flags of `coloctl node-attributes`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeAttributesArgs {
    /// Interference score (0-100) from which a node that still takes batch work is `medium`
    /// rather than `low`.
    #[arg(long, default_value_t = DEFAULT_MEDIUM_FROM, value_parser = score)]
    pub medium_from: f64,
}

/// Flags of `coloctl health-check`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthCheckArgs {
    /// Print an `ERROR` line (the NodeManager then reports the node unhealthy) while colo-agent
    /// cannot be reached. Without it an agent that is down leaves the node healthy (`WARN`).
    #[arg(long)]
    pub unhealthy_when_down: bool,
}

fn score(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("must be a score from 0 to 100, got {s:?}")),
    }
}

/// The agent's latest node report (None until its QoS loop has published one).
async fn latest_report(conn: &ConnectArgs) -> Result<Option<NodeReport>, CliError> {
    let mut client = connect(conn).await?;
    let status = client
        .node_status(pb::NodeStatusRequest {})
        .await?
        .into_inner();
    Ok(status.node_report)
}

/// Runs `coloctl node-attributes`: the attribute lines on stdout, exit 0. When the agent
/// cannot be reached the only attribute is `colo_interference=unknown` and the reason goes to
/// stderr (which the NodeManager logs).
pub async fn node_attributes(
    conn: &ConnectArgs,
    args: &NodeAttributesArgs,
) -> Result<Done, CliError> {
    let report = match latest_report(conn).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coloctl: {e}");
            if let Some(h) = e.hint() {
                eprintln!("hint: {h}");
            }
            None
        }
    };
    print!(
        "{}",
        node_attribute_lines(report.as_ref(), args.medium_from)
    );
    Ok(Done::Ok)
}

/// Runs `coloctl health-check`: one line on stdout, exit 0 whatever the verdict (the
/// NodeManager ignores the output of a script that exits non-zero).
pub async fn health_check(conn: &ConnectArgs, args: &HealthCheckArgs) -> Result<Done, CliError> {
    let line = match latest_report(conn).await {
        Ok(r) => health_check_line(r.as_ref()),
        Err(e) => agent_down_line(&e, args.unhealthy_when_down),
    };
    print!("{line}");
    Ok(Done::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use colo_proto::report::{Interference, Resources};

    fn report(score: f64, refuses: bool) -> NodeReport {
        NodeReport {
            node_name: "nm-1".into(),
            reclaimable: Some(Resources {
                cpu_millicores: 8_400,
                memory_bytes: 40 << 30,
            }),
            interference: Some(Interference {
                score,
                ..Interference::default()
            }),
            refuses_batch: refuses,
            ..NodeReport::default()
        }
    }

    #[test]
    fn attribute_lines_are_what_the_node_manager_accepts() {
        let out = node_attribute_lines(Some(&report(12.4, false)), DEFAULT_MEDIUM_FROM);
        assert_eq!(
            out,
            "NODE_ATTRIBUTE:colo_interference,STRING,low\n\
             NODE_ATTRIBUTE:colo_interference_score,STRING,12\n\
             NODE_ATTRIBUTE:colo_reclaimable_millicores,STRING,8400\n\
             NODE_ATTRIBUTE:colo_reclaimable_memory_mb,STRING,40960\n"
        );
        // YARN's checks: three comma-separated parts, names and values `[0-9a-zA-Z][0-9a-zA-Z-_]*`.
        let ok = |s: &str| {
            s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        for r in [report(0.0, false), report(45.0, false), report(99.6, true)] {
            for line in node_attribute_lines(Some(&r), DEFAULT_MEDIUM_FROM).lines() {
                let rest = line.strip_prefix("NODE_ATTRIBUTE:").unwrap();
                let parts: Vec<&str> = rest.split(',').collect();
                assert_eq!(parts.len(), 3, "{line}");
                assert!(
                    ok(parts[0]) && parts[1] == "STRING" && ok(parts[2]),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn levels_follow_the_agents_verdict() {
        assert_eq!(interference_level(&report(29.9, false), 30.0), "low");
        assert_eq!(interference_level(&report(30.0, false), 30.0), "medium");
        // Inside the hysteresis band a refusing node stays high even at a medium score.
        assert_eq!(interference_level(&report(60.0, true), 30.0), "high");
        let mut unknown = report(0.0, false);
        unknown.interference = None;
        assert_eq!(interference_level(&unknown, 30.0), "high");
        assert_eq!(
            node_attribute_lines(Some(&unknown), 30.0).lines().count(),
            3,
            "no score line without a score"
        );
        assert_eq!(
            node_attribute_lines(None, 30.0),
            "NODE_ATTRIBUTE:colo_interference,STRING,unknown\n"
        );
    }

    #[test]
    fn health_check_errors_only_while_refusing() {
        let refusing = health_check_line(Some(&report(77.0, true)));
        assert!(
            refusing.starts_with("ERROR colo: online interference score 77/100"),
            "{refusing}"
        );
        // Score back under refuse_above but not yet under accept_below: still refusing.
        assert!(health_check_line(Some(&report(60.0, true))).starts_with("ERROR"));
        let ok = health_check_line(Some(&report(20.0, false)));
        assert_eq!(
            ok,
            "OK colo: online interference score 20/100, batch work welcome\n"
        );
        assert!(health_check_line(None).starts_with("WARN"));
        for line in [refusing, ok, health_check_line(None)] {
            assert_eq!(line.lines().count(), 1);
        }
    }

    #[test]
    fn an_agent_that_is_down_is_unhealthy_only_when_asked() {
        let e = CliError::Connect {
            target: "/run/colo/agent.sock".into(),
            message: "No such file or directory (os error 2)".into(),
            hint: Some("is colo-agent running?\nIs --socket right?".into()),
        };
        let warn = agent_down_line(&e, false);
        assert_eq!(
            warn,
            "WARN colo: cannot reach the agent at /run/colo/agent.sock: No such file or \
             directory (os error 2); not judging this node\n"
        );
        let err = agent_down_line(&e, true);
        assert!(
            err.starts_with("ERROR colo: cannot reach the agent"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
        assert!(score("30").is_ok() && score("101").is_err() && score("x").is_err());
    }
}
