//! When a run measured the online service, and when it did not.
//!
//! A run's latency figures describe nginx only if nginx served the load it was given: an empty
//! histogram reads as 0 ms, which looks like the best latency there is. So a run is valid only
//! when the service answered at least [`MIN_RATE_SHARE`] of the rate asked with a 2xx and at
//! most [`MAX_ERROR_SHARE`] of the requests due failed. Every benchmark applies [`check`] to
//! every load it drives; an invalid run is reported with its cause ([`load_summary`], the new
//! lines of nginx's error log through [`log_excerpt`]), run again or the benchmark stops, and
//! its figures never reach a goal verdict: a goal whose runs are invalid or missing reads
//! [`NOT_MEASURED`].

use crate::loadgen::LoadReport;

/// Least share of the asked rate a valid run answers with a 2xx.
pub const MIN_RATE_SHARE: f64 = 0.95;

/// Largest share of the requests due that may fail in a valid run. Failed requests are missing
/// from the latency histogram, so a share near the 1 % that p99 looks at could hide its tail;
/// at 0.1 % p99 stays honest (p99.9 can still be off by that much).
pub const MAX_ERROR_SHARE: f64 = 0.001;

/// The verdict of a goal whose runs are invalid or missing.
pub const NOT_MEASURED: &str = "NOT measured";

/// Why a run did not measure the online service.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidRun {
    /// Fewer requests per second were answered than asked.
    #[error(
        "the service answered {achieved:.0} req/s of the {asked:.0} asked ({:.1} %; a valid run needs at least {:.0} %)",
        percent(*.achieved, *.asked),
        MIN_RATE_SHARE * 100.0
    )]
    LowRate {
        /// Answered (2xx) requests per second.
        achieved: f64,
        /// The rate asked.
        asked: f64,
    },
    /// Too many requests failed.
    #[error(
        "{errors} of {due} requests failed ({:.2} %; a valid run allows at most {:.1} %)",
        percent(*.errors as f64, *.due as f64),
        MAX_ERROR_SHARE * 100.0
    )]
    Errors {
        /// Failed requests.
        errors: u64,
        /// Requests due in the recorded interval.
        due: u64,
    },
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

/// Whether a load run measured the service: `asked` is the mean rate the run asked for over
/// its recorded interval (requests/s).
pub fn check(report: &LoadReport, asked: f64) -> Result<(), InvalidRun> {
    if report.achieved_rate.is_nan() || report.achieved_rate < MIN_RATE_SHARE * asked {
        return Err(InvalidRun::LowRate {
            achieved: report.achieved_rate,
            asked,
        });
    }
    if report.errors as f64 > MAX_ERROR_SHARE * report.due as f64 {
        return Err(InvalidRun::Errors {
            errors: report.errors,
            due: report.due,
        });
    }
    Ok(())
}

/// The load generator's counts, for the operator: what was due, answered, and how the rest
/// failed.
pub fn load_summary(r: &LoadReport) -> String {
    let statuses = if r.error_statuses.is_empty() {
        "no error status".to_string()
    } else {
        r.error_statuses
            .iter()
            .map(|(status, n)| format!("{n} × HTTP {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "load generator: {} of {} requests due answered with a 2xx, {} failed ({statuses}; {} on broken connections; {} unanswered at the end), {} reconnections",
        r.ok, r.due, r.errors, r.broken, r.unanswered, r.reconnects
    )
}

/// Lines of a log that [`log_excerpt`] groups (a run can add one line per request).
const EXCERPT_TAIL: usize = 1000;

/// The lines a log gained during a run (`new`), for the operator: how many, and the last `keep`
/// different messages among its last [`EXCERPT_TAIL`] lines, each with its count there. Lines
/// that differ only in their digits (time, pid, connection number) are one message.
pub fn log_excerpt(name: &str, new: &str, keep: usize) -> String {
    let lines: Vec<&str> = new.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return format!("{name}: nothing new");
    }
    let tail = &lines[lines.len().saturating_sub(EXCERPT_TAIL)..];
    let mut messages: Vec<(String, &str, usize)> = Vec::new();
    for line in tail {
        let key: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
        // Most recent last: a repeated message moves to the end with its latest line.
        let count = match messages.iter().position(|(k, ..)| *k == key) {
            Some(i) => messages.remove(i).2 + 1,
            None => 1,
        };
        messages.push((key, line, count));
    }
    let last = &messages[messages.len().saturating_sub(keep)..];
    let shown: Vec<String> = last
        .iter()
        .map(|(_, line, n)| format!("{n} × {line}"))
        .collect();
    format!(
        "{name}: {} new lines; the last {} different of the last {}:\n    {}",
        lines.len(),
        last.len(),
        tail.len(),
        shown.join("\n    ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(asked: f64, achieved: f64, due: u64, errors: u64) -> LoadReport {
        LoadReport {
            target_rate: asked,
            measured_s: 1.0,
            due,
            ok: due - errors,
            errors,
            error_statuses: Default::default(),
            broken: errors,
            unanswered: 0,
            achieved_rate: achieved,
            p50_us: 0.0,
            p90_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            mean_us: 0.0,
            max_backlog: 0,
            reconnects: 0,
            start_mono_ns: 0,
            step_mono_ns: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn a_run_below_95_percent_of_the_asked_rate_is_invalid() {
        assert_eq!(check(&report(3000.0, 3000.0, 3000, 0), 3000.0), Ok(()));
        assert_eq!(check(&report(3000.0, 2850.0, 3000, 0), 3000.0), Ok(()));
        let low = check(&report(3000.0, 2849.0, 3000, 0), 3000.0).unwrap_err();
        assert_eq!(
            low,
            InvalidRun::LowRate {
                achieved: 2849.0,
                asked: 3000.0
            }
        );
        assert!(
            low.to_string()
                .contains("2849 req/s of the 3000 asked (95.0 %"),
            "{low}"
        );
        // Nothing answered: the case that used to print p99 0.000 ms.
        let none = check(&report(3000.0, 0.0, 3000, 3000), 3000.0).unwrap_err();
        assert!(matches!(none, InvalidRun::LowRate { .. }), "{none}");
        assert!(check(&report(3000.0, f64::NAN, 0, 0), 3000.0).is_err());
    }

    #[test]
    fn a_run_with_more_than_a_tenth_of_a_percent_errors_is_invalid() {
        // At the full rate, yet 0.2 % failed.
        assert_eq!(check(&report(3000.0, 3000.0, 100_000, 100), 3000.0), Ok(()));
        let e = check(&report(3000.0, 3000.0, 100_000, 200), 3000.0).unwrap_err();
        assert_eq!(
            e,
            InvalidRun::Errors {
                errors: 200,
                due: 100_000
            }
        );
        assert!(
            e.to_string()
                .starts_with("200 of 100000 requests failed (0.20 %"),
            "{e}"
        );
    }

    #[test]
    fn the_evidence_names_statuses_and_the_last_log_lines() {
        let mut r = report(3000.0, 0.0, 6000, 6000);
        r.broken = 0;
        r.error_statuses.insert(404, 6000);
        let s = load_summary(&r);
        assert!(s.contains("0 of 6000 requests due answered"), "{s}");
        assert!(s.contains("6000 × HTTP 404"), "{s}");
        let log = "10:01 a *1\n10:01 b\n\n10:02 c\n10:03 a *2\n";
        assert_eq!(
            log_excerpt("nginx's error log", log, 2),
            "nginx's error log: 4 new lines; the last 2 different of the last 4:\n    1 × 10:02 c\n    2 × 10:03 a *2"
        );
        assert_eq!(log_excerpt("x", "", 2), "x: nothing new");
    }
}
