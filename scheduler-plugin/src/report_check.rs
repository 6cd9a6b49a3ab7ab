//! What a node report must be before the table stores it: a node name Kubernetes would accept,
//! timestamps not ahead of the scheduler's clock, figures that are numbers in their range, and
//! small free-text fields.
//!
//! Reports arrive from the network; the table's memory and the placement decisions are only as
//! bounded as what passes here. The check is pure (the wall clock comes in as a number), costs a
//! few hundred nanoseconds, and never echoes more than [`SHOWN_NAME`] bytes of a bad name.

use std::time::Duration;

use colo_proto::report::NodeReport;

/// Longest node name: Kubernetes node names are DNS-1123 subdomains, at most 253 bytes.
pub const MAX_NODE_NAME: usize = 253;

/// Longest `agent_version`.
pub const MAX_AGENT_VERSION: usize = 128;

/// Most `jobs_by_state` entries.
pub const MAX_JOB_STATES: usize = 32;
/// Longest `jobs_by_state` key.
pub const MAX_JOB_STATE_NAME: usize = 63;

/// Bytes of a refused name repeated in an error message.
pub const SHOWN_NAME: usize = 64;

/// Why a report is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    /// The report names no node.
    #[error(
        "report with seq {seq} has an empty node_name: set node.name in the agent's config (or \
         give the host a name)"
    )]
    EmptyNodeName {
        /// The report's sequence number.
        seq: u64,
    },
    /// The node name is longer than Kubernetes allows.
    #[error(
        "node_name {shown:?}… is {len} bytes; Kubernetes node names are at most 253: set \
         node.name in the agent's config to the node's Kubernetes name"
    )]
    NodeNameTooLong {
        /// The first [`SHOWN_NAME`] bytes (lossy UTF-8).
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The node name is not a DNS-1123 subdomain.
    #[error(
        "node_name {shown:?} is not a Kubernetes node name ({why}): lower-case letters, digits, \
         '-' and '.', starting and ending with a letter or digit; set node.name in the agent's \
         config to the node's Kubernetes name"
    )]
    NodeNameInvalid {
        /// The name, cut to [`SHOWN_NAME`] bytes.
        shown: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A timestamp is negative.
    #[error("report for node {node:?}: {field} = {value} is before 1970")]
    NegativeTime {
        /// The node.
        node: String,
        /// `timestamp_unix_ms` or `agent_start_unix_ms`.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A timestamp is further ahead of the scheduler's clock than the allowed skew.
    #[error(
        "report for node {node:?}: {field} = {value} is {ahead_ms} ms ahead of colo-scheduler's \
         clock, more than the {skew_ms} ms allowed: synchronise the node's clock (NTP), or raise \
         colo-scheduler's --max-clock-skew"
    )]
    FromTheFuture {
        /// The node.
        node: String,
        /// `timestamp_unix_ms` or `agent_start_unix_ms`.
        field: &'static str,
        /// Its value.
        value: i64,
        /// How far ahead of the scheduler's clock.
        ahead_ms: i64,
        /// The allowed skew.
        skew_ms: u128,
    },
    /// A figure is NaN, infinite, or outside its range.
    #[error("report for node {node:?}: {field} = {value} is not a number from 0 to 100")]
    Figure {
        /// The node.
        node: String,
        /// The field, e.g. `interference.score`.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A free-text field or a map is larger than any agent sends.
    #[error("report for node {node:?}: {field} is {size}, at most {max} allowed")]
    TooLarge {
        /// The node.
        node: String,
        /// The field.
        field: &'static str,
        /// Its size (bytes or entries).
        size: usize,
        /// The bound.
        max: usize,
    },
}

/// The first [`SHOWN_NAME`] bytes of `name`, for an error message.
fn shown(name: &str) -> String {
    let mut end = name.len().min(SHOWN_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Whether `name` is a Kubernetes node name (a DNS-1123 subdomain, as the API server's
/// `IsDNS1123Subdomain` checks it).
///
/// # Errors
/// A [`ReportError`] about the name (`seq` only goes into the empty-name message).
pub fn check_node_name(name: &str, seq: u64) -> Result<(), ReportError> {
    if name.is_empty() {
        return Err(ReportError::EmptyNodeName { seq });
    }
    if name.len() > MAX_NODE_NAME {
        return Err(ReportError::NodeNameTooLong {
            shown: shown(name),
            len: name.len(),
        });
    }
    let invalid = |why| {
        Err(ReportError::NodeNameInvalid {
            shown: shown(name),
            why,
        })
    };
    for label in name.split('.') {
        let b = label.as_bytes();
        let (Some(first), Some(last)) = (b.first(), b.last()) else {
            return invalid("an empty part between dots");
        };
        if !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        {
            return invalid("a character other than a-z, 0-9, '-' or '.'");
        }
        if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
            return invalid("a part starting or ending with '-'");
        }
    }
    Ok(())
}

/// Checks `report`, received when the scheduler's wall clock read `now_unix_ms`, allowing its
/// timestamps up to `max_skew` ahead.
///
/// # Errors
/// The first [`ReportError`] found.
pub fn check(report: &NodeReport, now_unix_ms: i64, max_skew: Duration) -> Result<(), ReportError> {
    check_node_name(&report.node_name, report.seq)?;
    let node = || report.node_name.clone();
    let skew_ms = i64::try_from(max_skew.as_millis()).unwrap_or(i64::MAX);
    for (field, value) in [
        ("timestamp_unix_ms", report.timestamp_unix_ms),
        ("agent_start_unix_ms", report.agent_start_unix_ms),
    ] {
        if value < 0 {
            return Err(ReportError::NegativeTime {
                node: node(),
                field,
                value,
            });
        }
        let ahead_ms = value.saturating_sub(now_unix_ms);
        if ahead_ms > skew_ms {
            return Err(ReportError::FromTheFuture {
                node: node(),
                field,
                value,
                ahead_ms,
                skew_ms: max_skew.as_millis(),
            });
        }
    }
    if let Some(i) = &report.interference {
        for (field, value) in [
            ("interference.score", i.score),
            ("interference.run_delay", i.run_delay),
            ("interference.psi", i.psi),
            ("interference.sli", i.sli),
        ] {
            if !(0.0..=100.0).contains(&value) {
                return Err(ReportError::Figure {
                    node: node(),
                    field,
                    value,
                });
            }
        }
    }
    let too_large = |field, size, max| {
        Err(ReportError::TooLarge {
            node: node(),
            field,
            size,
            max,
        })
    };
    if report.agent_version.len() > MAX_AGENT_VERSION {
        return too_large(
            "agent_version (bytes)",
            report.agent_version.len(),
            MAX_AGENT_VERSION,
        );
    }
    if report.jobs_by_state.len() > MAX_JOB_STATES {
        return too_large(
            "jobs_by_state (entries)",
            report.jobs_by_state.len(),
            MAX_JOB_STATES,
        );
    }
    if let Some(k) = report
        .jobs_by_state
        .keys()
        .find(|k| k.len() > MAX_JOB_STATE_NAME)
    {
        return too_large("a jobs_by_state key (bytes)", k.len(), MAX_JOB_STATE_NAME);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use colo_proto::report::Interference;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const SKEW: Duration = Duration::from_secs(60);

    fn report(name: &str) -> NodeReport {
        NodeReport {
            node_name: name.into(),
            seq: 1,
            timestamp_unix_ms: NOW - 5,
            agent_start_unix_ms: NOW - 60_000,
            agent_version: "0.1.0".into(),
            interference: Some(Interference {
                score: 12.5,
                run_delay: 0.0,
                psi: 100.0,
                sli: 3.0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_node_names_pass() {
        for name in [
            "a",
            "node-7",
            "ip-10-0-1-17.eu-west-1.compute.internal",
            "0",
            &"a".repeat(MAX_NODE_NAME),
        ] {
            assert_eq!(check(&report(name), NOW, SKEW), Ok(()), "{name}");
        }
    }

    #[test]
    fn other_names_are_refused_with_a_short_quote() {
        for (name, why) in [
            ("Node-7", "a character other than"),
            ("node_7", "a character other than"),
            ("node 7", "a character other than"),
            ("-node", "starting or ending with '-'"),
            ("node-", "starting or ending with '-'"),
            ("a..b", "an empty part"),
            (".a", "an empty part"),
            ("a.", "an empty part"),
            ("nœud", "a character other than"),
        ] {
            let e = check(&report(name), NOW, SKEW).unwrap_err().to_string();
            assert!(e.contains(why), "{name}: {e}");
        }
        let long = "n".repeat(3 << 20);
        let e = check(&report(&long), NOW, SKEW).unwrap_err();
        assert!(matches!(e, ReportError::NodeNameTooLong { len, .. } if len == 3 << 20));
        assert!(
            e.to_string().len() < 400,
            "the message quotes 64 bytes at most"
        );
        let e = check(&report(""), NOW, SKEW).unwrap_err();
        assert_eq!(e, ReportError::EmptyNodeName { seq: 1 });
        // A cut inside a multi-byte character stays valid UTF-8.
        assert_eq!(shown(&"é".repeat(40)).len(), 64);
        assert_eq!(shown(&format!("a{}", "é".repeat(40))).len(), 63);
    }

    #[test]
    fn timestamps_ahead_of_the_clock_are_refused() {
        let mut r = report("node-7");
        r.timestamp_unix_ms = NOW + 60_000;
        assert_eq!(check(&r, NOW, SKEW), Ok(()), "exactly the skew passes");
        r.agent_start_unix_ms = NOW + 10 * 365 * 86_400_000;
        let e = check(&r, NOW, SKEW).unwrap_err().to_string();
        assert!(e.contains("agent_start_unix_ms"), "{e}");
        assert!(e.contains("--max-clock-skew"), "{e}");
        r.agent_start_unix_ms = i64::MAX;
        assert!(check(&r, NOW, SKEW).is_err());
        r.agent_start_unix_ms = -1;
        let e = check(&r, NOW, SKEW).unwrap_err();
        assert!(matches!(e, ReportError::NegativeTime { .. }), "{e}");
        r.agent_start_unix_ms = 0;
        assert_eq!(check(&r, NOW, SKEW), Ok(()));
    }

    #[test]
    fn figures_must_be_numbers_in_range() {
        for bad in [f64::NAN, -0.5, 100.01, f64::INFINITY, f64::NEG_INFINITY] {
            let mut r = report("n");
            r.interference.as_mut().unwrap().score = bad;
            assert!(
                matches!(
                    check(&r, NOW, SKEW),
                    Err(ReportError::Figure {
                        field: "interference.score",
                        ..
                    })
                ),
                "{bad}"
            );
            let mut r = report("n");
            r.interference.as_mut().unwrap().sli = bad;
            assert!(check(&r, NOW, SKEW).is_err(), "{bad}");
        }
        let mut r = report("n");
        r.interference = None;
        assert_eq!(
            check(&r, NOW, SKEW),
            Ok(()),
            "no score: counted as severe later"
        );
    }

    #[test]
    fn free_text_is_bounded() {
        let mut r = report("n");
        r.agent_version = "v".repeat(MAX_AGENT_VERSION + 1);
        assert!(matches!(
            check(&r, NOW, SKEW),
            Err(ReportError::TooLarge { .. })
        ));
        let mut r = report("n");
        r.jobs_by_state = (0..=MAX_JOB_STATES).map(|i| (format!("s{i}"), 1)).collect();
        assert!(check(&r, NOW, SKEW).is_err());
        let mut r = report("n");
        r.jobs_by_state.insert("x".repeat(64), 1);
        assert!(check(&r, NOW, SKEW).is_err());
        r.jobs_by_state.clear();
        r.jobs_by_state.insert("running".into(), 3);
        assert_eq!(check(&r, NOW, SKEW), Ok(()));
    }
}
