//! The comparison as text: a table for the terminal and CSV files.

use std::fmt::Write as _;

use crate::cluster::RunResult;

/// The note every latency figure carries.
pub const LATENCY_NOTE: &str = "online p99 and SLO figures come from the contention model \
     (docs/simulation.md): the traces carry no latency";

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// The comparison table.
#[must_use]
pub fn table(results: &[RunResult], trace: &str, slo_p99_ms: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "trace: {trace}");
    let _ = writeln!(out, "SLO: online p99 <= {slo_p99_ms} ms; {LATENCY_NOTE}");
    let header = [
        "mode",
        "cpu util mean %",
        "cpu util p95 %",
        "SLO viol. node-min*",
        "online p99 mean ms*",
        "offline core-h",
        "work done core-h",
        "VMs done",
        "jobs done",
        "JCT p50 min",
        "JCT p99 min",
        "preempted",
        "OOM-killed",
        "failed",
        "pending end",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let s = &r.summary;
            vec![
                s.mode.clone(),
                format!("{:.1}", s.utilisation_mean_pct),
                format!("{:.1}", s.utilisation_p95_pct),
                format!("{:.0}", s.slo_violation_minutes),
                format!("{:.3}", s.online_p99_mean_ms),
                format!("{:.0}", s.offline_core_hours),
                format!("{:.0}", s.work_done_core_hours),
                s.vms.finished.to_string(),
                s.jobs_finished.to_string(),
                opt(s.jct_p50_min),
                opt(s.jct_p99_min),
                s.vms.preempted.to_string(),
                s.vms.oom_killed.to_string(),
                s.vms.failed.to_string(),
                s.vms.pending.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain(std::iter::once(h.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str], out: &mut String| {
        for (i, c) in cells.iter().enumerate() {
            let sep = if i == 0 { "" } else { " | " };
            if i == 0 {
                let _ = write!(out, "{sep}{c:<w$}", w = widths[i]);
            } else {
                let _ = write!(out, "{sep}{c:>w$}", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(&header, &mut out);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(
        &rule.iter().map(String::as_str).collect::<Vec<_>>(),
        &mut out,
    );
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>(), &mut out);
    }
    let _ = writeln!(out, "* contention model, not measured latency");
    for r in results {
        let a = &r.summary.actions;
        if a.total() > 0 {
            let _ = writeln!(
                out,
                "{}: {:.1} VMs per node, {} controller ticks; actions cpu_quota={} vcpu_quota={} sched_idle={} io_limit={} memory_limit={} \
                 pause={} resume={} evict={}",
                r.summary.mode,
                r.summary.vms_per_node,
                a.ticks,
                a.cpu_quota,
                a.vcpu_quota,
                a.sched_idle,
                a.io_limit,
                a.memory_limit,
                a.pause,
                a.resume,
                a.evict
            );
        }
    }
    out
}

/// One CSV row per mode.
#[must_use]
pub fn summary_csv(results: &[RunResult]) -> String {
    let mut out = String::from(
        "mode,node_steps,cpu_util_mean_pct,cpu_util_p95_pct,slo_violation_node_minutes_model,\
         online_p99_mean_ms_model,online_p99_p99_ms_model,offline_core_hours,\
         work_done_core_hours,vms_submitted,vms_finished,vms_failed,vms_oom_killed,\
         vms_preempted,vms_running,vms_pending,jobs_submitted,jobs_finished,jct_p50_min,\
         jct_p99_min,actions_cpu_quota,actions_vcpu_quota,actions_sched_idle,actions_io_limit,\
         actions_memory_limit,actions_pause,actions_resume,actions_evict,vms_per_node,\
         controller_ticks\n",
    );
    for r in results {
        let s = &r.summary;
        let a = &s.actions;
        let v = &s.vms;
        let o = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "{},{},{:.3},{:.1},{:.3},{:.4},{:.4},{:.3},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2},{}",
            s.mode,
            s.node_steps,
            s.utilisation_mean_pct,
            s.utilisation_p95_pct,
            s.slo_violation_minutes,
            s.online_p99_mean_ms,
            s.online_p99_p99_ms,
            s.offline_core_hours,
            s.work_done_core_hours,
            v.submitted,
            v.finished,
            v.failed,
            v.oom_killed,
            v.preempted,
            v.running,
            v.pending,
            s.jobs_submitted,
            s.jobs_finished,
            o(s.jct_p50_min),
            o(s.jct_p99_min),
            a.cpu_quota,
            a.vcpu_quota,
            a.sched_idle,
            a.io_limit,
            a.memory_limit,
            a.pause,
            a.resume,
            a.evict,
            s.vms_per_node,
            a.ticks
        );
    }
    out
}

/// The series of every mode, one row per mode and bucket.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn series_csv(results: &[RunResult]) -> String {
    let mut out = String::from(
        "mode,hour,cpu_util_mean_pct,online_p99_mean_ms_model,online_p99_p99_ms_model,\
         slo_violation_node_minutes_model,offline_cores,online_cores,vms_finished,\
         work_done_core_hours\n",
    );
    for r in results {
        let mut step = 0u64;
        for b in &r.series {
            let hour = step as f64 * f64::from(r.step_secs) / 3600.0;
            let secs = f64::from(b.steps) * f64::from(r.step_secs);
            let _ = writeln!(
                out,
                "{},{:.4},{:.3},{:.4},{:.4},{:.3},{:.1},{:.1},{},{:.3}",
                r.summary.mode,
                hour,
                b.utilisation_pct(),
                b.p99_mean_ms(),
                b.p99_quantile_ms(0.99),
                b.violation_ms as f64 / 60_000.0,
                b.offline_mcs as f64 / 1000.0 / secs.max(1.0),
                b.online_mcs as f64 / 1000.0 / secs.max(1.0),
                b.vms_finished,
                b.work_done_mcs as f64 / 1000.0 / 3600.0
            );
            step += u64::from(b.steps);
        }
    }
    out
}
