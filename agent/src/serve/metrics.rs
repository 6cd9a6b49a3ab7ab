//! Prometheus metrics on the agent's HTTP listener.
//!
//! Counters and histograms the agent updates as things happen go through the `metrics` crate
//! (e.g. `colo_vm_start_seconds`); values that already live in the kernel (per-job cgroup
//! usage, node PSI) are read at scrape time, so nothing is polled between scrapes.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `colo_jobs` | gauge | `state` |
//! | `colo_vm_start_seconds` | histogram (Submit → Running) | |
//! | `colo_job_cpu_seconds_total` | counter | `job_id` |
//! | `colo_job_memory_bytes` | gauge | `job_id` |
//! | `colo_job_io_bytes_total` | counter | `job_id`, `direction` (`read`/`write`) |
//! | `colo_job_cpu_throttled_seconds_total` | counter | `job_id` |
//! | `colo_offline_budget_millicores`, `colo_offline_reserved_millicores` | gauge | |
//! | `colo_agent_resident_bytes`, `colo_agent_cpu_seconds_total` | gauge, counter | |
//! | `colo_build_info` | gauge (1) | `version` |
//! | `colo_node_pressure_{cpu,memory,io}_waiting_seconds_total` (some) | counter | |
//! | `colo_node_pressure_{cpu,memory,io,irq}_stalled_seconds_total` (full) | counter | |
//! | `colo_qos_tick_seconds` | histogram ([`TICK_BUCKETS`]) | |
//!
//! Every family carries `# HELP`; latencies are histograms (summaries cannot be aggregated
//! across nodes). PSI keeps node_exporter's shape under colo's prefix, so both exporters can
//! run on one node without two series of one name.

use std::fmt::Write;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::jobs::JobManager;

/// Errors setting up metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The recorder could not be built or installed.
    #[error("cannot install the metrics recorder: {0}")]
    Install(String),
}

/// Buckets of `colo_vm_start_seconds`.
pub const START_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Buckets of `colo_qos_tick_seconds`: a tick takes tens to hundreds of microseconds; the top
/// buckets catch ticks that eat into the 50 ms period.
pub const TICK_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// The agent's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Builds the recorder and installs it as the process's global recorder.
    pub fn install() -> Result<Self, MetricsError> {
        let err = |e: metrics_exporter_prometheus::BuildError| MetricsError::Install(e.to_string());
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("colo_vm_start_seconds".into()), START_BUCKETS)
            .map_err(err)?
            .set_buckets_for_metric(Matcher::Full(crate::qos::METRIC_TICK.into()), TICK_BUCKETS)
            .map_err(err)?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|e| MetricsError::Install(e.to_string()))?;
        describe();
        Ok(Self { handle })
    }

    /// The whole exposition text.
    pub fn render(&self, jobs: &JobManager) -> String {
        self.handle.run_upkeep();
        let mut out = self.handle.render();
        render_live(&mut out, jobs);
        render_psi(&mut out, std::path::Path::new("/proc/pressure"));
        out
    }
}

/// HELP texts of the metrics the agent updates through the `metrics` facade (the exporter
/// writes `# HELP` only for described metrics).
fn describe() {
    use crate::qos::enforce::{METRIC_ACTIONS, METRIC_ERRORS, METRIC_OFFLINE_QUOTA};
    use crate::qos::{METRIC_TICK, METRIC_TICKS};
    use crate::serve::reporter::{
        METRIC_CONNECTED, METRIC_CONNECTS, METRIC_DROPPED, METRIC_PRODUCED,
    };
    describe_histogram!(
        "colo_vm_start_seconds",
        Unit::Seconds,
        "Time from SubmitJob to the job's VM running"
    );
    describe_histogram!(
        METRIC_TICK,
        Unit::Seconds,
        "Duration of one QoS loop tick (read the signals, decide, apply)"
    );
    describe_counter!(
        METRIC_TICKS,
        "QoS loop ticks, by what started them (timer, psi, sli)"
    );
    describe_counter!(
        METRIC_ACTIONS,
        "QoS actions decided, by action, rule, direction and mode (enforce, observe)"
    );
    describe_counter!(METRIC_ERRORS, "QoS actions that failed to apply, by action");
    describe_gauge!(
        METRIC_OFFLINE_QUOTA,
        "CPU quota of the offline group in force, cores"
    );
    describe_counter!(METRIC_PRODUCED, "Node reports produced for colo-scheduler");
    describe_counter!(
        METRIC_DROPPED,
        "Node reports dropped from the full buffer before colo-scheduler acknowledged them"
    );
    describe_counter!(METRIC_CONNECTS, "Report streams opened to colo-scheduler");
    describe_gauge!(
        METRIC_CONNECTED,
        "1 while a report stream to colo-scheduler is open"
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Build information, job counts, budget, per-job cgroup usage and the agent's own footprint.
pub fn render_live(out: &mut String, jobs: &JobManager) {
    header(
        out,
        "colo_build_info",
        "gauge",
        "Always 1; the version label says which colo-agent serves these metrics",
    );
    let _ = writeln!(
        out,
        "colo_build_info{{version=\"{}\"}} 1",
        crate::AGENT_VERSION
    );
    header(
        out,
        "colo_jobs",
        "gauge",
        "Jobs known to the agent, by state",
    );
    for (state, n) in jobs.counts_by_state() {
        let _ = writeln!(out, "colo_jobs{{state=\"{}\"}} {n}", state.name());
    }
    let u = jobs.budget_use();
    header(
        out,
        "colo_offline_budget_millicores",
        "gauge",
        "CPU the offline side may reserve",
    );
    let _ = writeln!(
        out,
        "colo_offline_budget_millicores {}",
        u.budget.cpu_millicores
    );
    header(
        out,
        "colo_offline_reserved_millicores",
        "gauge",
        "CPU reserved by unfinished jobs",
    );
    let _ = writeln!(
        out,
        "colo_offline_reserved_millicores {}",
        u.reserved_millicores
    );

    let live: Vec<_> = jobs
        .live_jobs()
        .into_iter()
        .filter_map(|j| j.cgroup.map(|c| (j.record.id, c.stats())))
        .collect();
    header(
        out,
        "colo_job_cpu_seconds_total",
        "counter",
        "CPU time of the job's VMM (its cgroup)",
    );
    for (id, s) in &live {
        let _ = writeln!(
            out,
            "colo_job_cpu_seconds_total{{job_id=\"{id}\"}} {}",
            s.cpu_usage_ns as f64 / 1e9
        );
    }
    header(
        out,
        "colo_job_memory_bytes",
        "gauge",
        "Memory charged to the job's cgroup",
    );
    for (id, s) in &live {
        let _ = writeln!(
            out,
            "colo_job_memory_bytes{{job_id=\"{id}\"}} {}",
            s.memory_bytes
        );
    }
    header(
        out,
        "colo_job_io_bytes_total",
        "counter",
        "Block IO of the job's cgroup",
    );
    for (id, s) in &live {
        let _ = writeln!(
            out,
            "colo_job_io_bytes_total{{job_id=\"{id}\",direction=\"read\"}} {}",
            s.io_read_bytes
        );
        let _ = writeln!(
            out,
            "colo_job_io_bytes_total{{job_id=\"{id}\",direction=\"write\"}} {}",
            s.io_write_bytes
        );
    }
    header(
        out,
        "colo_job_cpu_throttled_seconds_total",
        "counter",
        "Time the job's threads were throttled by CFS bandwidth control",
    );
    for (id, s) in &live {
        let _ = writeln!(
            out,
            "colo_job_cpu_throttled_seconds_total{{job_id=\"{id}\"}} {}",
            s.cpu_throttled_ns as f64 / 1e9
        );
    }
    let me = std::process::id();
    if let Ok(rss) = crate::jobs::procinfo::rss_bytes(me) {
        header(
            out,
            "colo_agent_resident_bytes",
            "gauge",
            "Resident memory of the agent",
        );
        let _ = writeln!(out, "colo_agent_resident_bytes {rss}");
    }
    if let Ok(ticks) = crate::jobs::procinfo::cpu_ticks(me) {
        header(
            out,
            "colo_agent_cpu_seconds_total",
            "counter",
            "CPU time of the agent",
        );
        let hz = crate::jobs::procinfo::clock_ticks_per_second();
        let _ = writeln!(
            out,
            "colo_agent_cpu_seconds_total {}",
            ticks as f64 / hz as f64
        );
    }
}

/// Node PSI in node_exporter's shape under colo's prefix (`total=` is in µs).
pub fn render_psi(out: &mut String, dir: &std::path::Path) {
    for resource in ["cpu", "memory", "io", "irq"] {
        let Ok(text) = std::fs::read_to_string(dir.join(resource)) else {
            continue;
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let kind = words.next();
            let total = words
                .find_map(|w| w.strip_prefix("total="))
                .and_then(|v| v.parse::<u64>().ok());
            let (Some(kind), Some(total)) = (kind, total) else {
                continue;
            };
            let name = match kind {
                "some" if resource != "irq" => {
                    format!("colo_node_pressure_{resource}_waiting_seconds_total")
                }
                "full" => format!("colo_node_pressure_{resource}_stalled_seconds_total"),
                _ => continue,
            };
            let help = match kind {
                "some" => {
                    format!("Total time in seconds that processes have waited for {resource}")
                }
                _ => format!(
                    "Total time in seconds no process could make progress due to {resource}"
                ),
            };
            header(out, &name, "counter", &help);
            let _ = writeln!(out, "{name} {}", total as f64 / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_has_node_exporters_shape_under_colos_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu"),
            "some avg10=1.00 avg60=0.50 avg300=0.10 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("io"), "some avg10=0 avg60=0 avg300=0 total=1000000\nfull avg10=0 avg60=0 avg300=0 total=500000\n").unwrap();
        let mut out = String::new();
        render_psi(&mut out, dir.path());
        assert!(
            out.contains("\ncolo_node_pressure_cpu_waiting_seconds_total 2.5\n"),
            "{out}"
        );
        assert!(
            out.contains("\ncolo_node_pressure_cpu_stalled_seconds_total 0\n"),
            "{out}"
        );
        assert!(
            out.contains("\ncolo_node_pressure_io_stalled_seconds_total 0.5\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE colo_node_pressure_io_waiting_seconds_total counter"),
            "{out}"
        );
        assert!(!out.contains("memory"), "{out}");
        assert!(
            out.lines().all(|l| !l.starts_with("node_")),
            "no series under node_exporter's own names: {out}"
        );
    }
}
