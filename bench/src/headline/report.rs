//! The headline's report: the per-run CSV, the summary CSV and the markdown table with the
//! goals checked per scenario.

use std::time::Duration;

use super::{Config, Mode, RunResult, Scenario};
use crate::stats::Estimate;

pub(super) const CSV_HEADER: &str = "scenario,mode,rep,p50_ms,p99_ms,p999_ms,max_ms,achieved_rate,target_rate,errors,progress_per_s,offline_cpu_cores,node_util,idle_cpu_cores,steal,agent_cpu_pct,agent_rss_mib,actions,load_before,window_s";

pub(super) fn csv_row(r: &RunResult) -> String {
    format!(
        "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.1},{:.1},{},{:.1},{:.4},{:.4},{:.4},{:.4},{:.3},{:.1},{},{:.2},{:.2}",
        r.scenario.name(),
        r.mode.key(),
        r.rep,
        r.p50_ms,
        r.p99_ms,
        r.p999_ms,
        r.max_ms,
        r.achieved_rate,
        r.target_rate,
        r.errors,
        r.progress_per_s,
        r.offline_cpu,
        r.node_util,
        r.idle_cpu,
        r.steal,
        r.agent_cpu_pct,
        r.agent_rss_mib,
        r.actions,
        r.load_before,
        r.window_s
    )
}

fn est(results: &[RunResult], s: Scenario, m: Mode, f: impl Fn(&RunResult) -> f64) -> Estimate {
    let v: Vec<f64> = results
        .iter()
        .filter(|r| r.scenario == s && r.mode == m)
        .map(f)
        .collect();
    Estimate::of(&v)
}

pub(super) fn summary_csv(cfg: &Config, results: &[RunResult]) -> String {
    let mut out = String::from(
        "scenario,mode,n,p50_ms,p50_lo,p50_hi,p99_ms,p99_lo,p99_hi,p999_ms,p999_lo,p999_hi,achieved_rate,progress_per_s,offline_cpu_cores,node_util,agent_cpu_pct,agent_rss_mib\n",
    );
    for &s in &cfg.scenarios {
        for &m in &cfg.modes {
            let e = |f: fn(&RunResult) -> f64| est(results, s, m, f);
            let (p50, p99, p999) = (e(|r| r.p50_ms), e(|r| r.p99_ms), e(|r| r.p999_ms));
            out.push_str(&format!(
                "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.1},{:.1},{:.4},{:.4},{:.3},{:.1}\n",
                s.name(), m.key(), p99.n, p50.median, p50.lo, p50.hi, p99.median, p99.lo, p99.hi, p999.median, p999.lo, p999.hi,
                e(|r| r.achieved_rate).median, e(|r| r.progress_per_s).median, e(|r| r.offline_cpu).median, e(|r| r.node_util).median,
                e(|r| r.agent_cpu_pct).median, e(|r| r.agent_rss_mib).median
            ));
        }
    }
    out
}

/// The markdown table with the goals checked per scenario.
pub fn table(cfg: &Config, results: &[RunResult], took: Duration) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "nginx-light (1 worker, {} B file) at {:.0} req/s open loop; {} × 1-vCPU workload-guest VMs; each run {:.0} s ({:.0} s recorded); {} repetitions, modes interleaved; medians with bootstrap 95 % intervals. Total time {:.1} min.\n\n",
        cfg.file_size, cfg.rate, cfg.vms, cfg.duration.as_secs_f64(), (cfg.duration - cfg.warmup).as_secs_f64(), cfg.repeats, took.as_secs_f64() / 60.0
    ));
    for &s in &cfg.scenarios {
        t.push_str(&format!("### {} hog\n\n", s.name()));
        t.push_str("| mode | p50 ms | p99 ms | p99.9 ms | req/s | offline progress /s | offline CPU (cores) | node CPU | agent CPU | steal |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for &m in &cfg.modes {
            let e = |f: fn(&RunResult) -> f64| est(results, s, m, f);
            if e(|r| r.p99_ms).n == 0 {
                continue;
            }
            let agent = if m == Mode::Alone {
                "–".to_string()
            } else {
                format!("{:.2} %", e(|r| r.agent_cpu_pct).median)
            };
            t.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} | {:.2} | {:.0} % | {} | {:.2} % |\n",
                m.name(),
                e(|r| r.p50_ms).show(3),
                e(|r| r.p99_ms).show(3),
                e(|r| r.p999_ms).show(2),
                e(|r| r.achieved_rate).median,
                e(|r| r.progress_per_s).show(0),
                e(|r| r.offline_cpu).median,
                e(|r| r.node_util).median * 100.0,
                agent,
                e(|r| r.steal).median * 100.0,
            ));
        }
        let alone = est(results, s, Mode::Alone, |r| r.p99_ms);
        let colo = est(results, s, Mode::Colo, |r| r.p99_ms);
        let idle = est(results, s, Mode::Alone, |r| r.idle_cpu);
        let off = est(results, s, Mode::Colo, |r| r.offline_cpu);
        let stat = est(results, s, Mode::Static, |r| r.p99_ms);
        if alone.n > 0 && colo.n > 0 {
            let ratio = colo.median / alone.median;
            t.push_str(&format!(
                "\n- latency goal p99(4) ≤ 1.05 × p99(1): {:.3} vs {:.3} ms = {:.2}× — {}\n",
                colo.median,
                alone.median,
                ratio,
                if ratio <= 1.05 { "met" } else { "NOT met" }
            ));
            let share = off.median / idle.median.max(1e-9);
            t.push_str(&format!(
                "- offline CPU goal ≥ 80 % of the CPU (1) leaves idle: {:.2} of {:.2} cores = {:.0} % — {}\n",
                off.median, idle.median, share * 100.0, if share >= 0.8 { "met" } else { "NOT met" }
            ));
            if stat.n > 0 && stat.median <= 1.05 * alone.median {
                let ps = est(results, s, Mode::Static, |r| r.progress_per_s);
                let pc = est(results, s, Mode::Colo, |r| r.progress_per_s);
                let verdict = if pc.median >= ps.median {
                    "met".to_string()
                } else if pc.median >= ps.lo {
                    format!(
                        "NOT met strictly (colo's median lies inside static's 95 % interval [{:.0}, {:.0}]: no measurable difference)",
                        ps.lo, ps.hi
                    )
                } else {
                    "NOT met".to_string()
                };
                t.push_str(&format!(
                    "- (3) meets the latency goal ({:.3} ms): colo progress {:.0}/s vs static {:.0}/s — {verdict}\n",
                    stat.median, pc.median, ps.median
                ));
            }
        }
        t.push('\n');
    }
    t
}
