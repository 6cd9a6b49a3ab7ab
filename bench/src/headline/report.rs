//! The headline's report: the per-run CSV, the summary CSV and the markdown table with the
//! goals checked per scenario. Figures come from valid runs only; a goal is judged only when
//! every repetition asked of the modes it compares is a valid run, and reads `NOT measured`
//! otherwise (invalid runs are listed under the table with their cause).

use std::time::Duration;

use super::{Config, Mode, Rejected, RunResult, Scenario};
use crate::stats::Estimate;
use crate::validity::{InvalidRun, NOT_MEASURED};

pub(super) const CSV_HEADER: &str = "scenario,mode,rep,p50_ms,p99_ms,p999_ms,max_ms,achieved_rate,target_rate,errors,progress_per_s,offline_cpu_cores,node_util,idle_cpu_cores,steal,agent_cpu_pct,agent_rss_mib,actions,load_before,window_s,valid,invalid_cause";

/// One line of `runs.csv`; `invalid` names why the run did not measure nginx.
pub(super) fn csv_row(r: &RunResult, invalid: Option<&InvalidRun>) -> String {
    format!(
        "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.1},{:.1},{},{:.1},{:.4},{:.4},{:.4},{:.4},{:.3},{:.1},{},{:.2},{:.2},{},\"{}\"",
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
        r.window_s,
        invalid.is_none(),
        invalid.map_or(String::new(), |c| c.to_string().replace('"', "'"))
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

/// The markdown table with the goals checked per scenario: `results` are the valid runs,
/// `rejected` the invalid ones (listed with their cause, in no figure).
pub fn table(cfg: &Config, results: &[RunResult], rejected: &[Rejected], took: Duration) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "nginx-light (1 worker, {} B file) at {:.0} req/s open loop; {} × 1-vCPU workload-guest VMs; each run {:.0} s ({:.0} s recorded); {} repetitions, modes interleaved; medians with bootstrap 95 % intervals. Total time {:.1} min.\n\n",
        cfg.file_size, cfg.rate, cfg.vms, cfg.duration.as_secs_f64(), cfg.duration.saturating_sub(cfg.warmup).as_secs_f64(), cfg.repeats, took.as_secs_f64() / 60.0
    ));
    for &s in &cfg.scenarios {
        t.push_str(&format!("### {} hog\n\n", s.name()));
        t.push_str("| mode | p50 ms | p99 ms | p99.9 ms | req/s | offline progress /s | offline CPU (cores) | node CPU | agent CPU | steal |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for &m in &cfg.modes {
            let e = |f: fn(&RunResult) -> f64| est(results, s, m, f);
            if e(|r| r.p99_ms).n == 0 {
                t.push_str(&format!(
                    "| {} | {NOT_MEASURED}: no valid run | | | | | | | | |\n",
                    m.name()
                ));
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
        let bad: Vec<&Rejected> = rejected.iter().filter(|r| r.run.scenario == s).collect();
        if !bad.is_empty() {
            t.push_str("\nInvalid runs (nginx not measured; in no figure above):\n\n");
            for r in bad {
                t.push_str(&format!(
                    "- {} rep {}, attempt {}: {}\n",
                    r.run.mode.name(),
                    r.run.rep,
                    r.attempt,
                    r.cause
                ));
            }
        }
        t.push_str(&goals(cfg, results, s));
        t.push('\n');
    }
    t
}

/// The goal lines of one scenario (none when the modes asked do not include (1) and (4), which
/// every goal compares).
pub(super) fn goals(cfg: &Config, results: &[RunResult], s: Scenario) -> String {
    let asked = |m: Mode| cfg.modes.contains(&m);
    if !(asked(Mode::Alone) && asked(Mode::Colo)) {
        return String::new();
    }
    // Why a goal over `modes` cannot be judged: some repetition asked is not a valid run.
    let unmeasured = |modes: &[Mode]| -> Option<String> {
        let gaps: Vec<String> = modes
            .iter()
            .map(|&m| {
                (
                    m,
                    results
                        .iter()
                        .filter(|r| r.scenario == s && r.mode == m)
                        .count(),
                )
            })
            .filter(|&(_, n)| n < cfg.repeats.max(1))
            .map(|(m, n)| format!("{n} valid of {} runs of {}", cfg.repeats, m.name()))
            .collect();
        (!gaps.is_empty()).then(|| format!("— {NOT_MEASURED} ({})", gaps.join("; ")))
    };
    let mut t = String::from("\n");
    let alone = est(results, s, Mode::Alone, |r| r.p99_ms);
    match unmeasured(&[Mode::Alone, Mode::Colo]) {
        Some(why) => {
            t.push_str(&format!("- latency goal p99(4) ≤ 1.05 × p99(1) {why}\n"));
            t.push_str(&format!(
                "- offline CPU goal ≥ 80 % of the CPU (1) leaves idle {why}\n"
            ));
        }
        None => {
            let colo = est(results, s, Mode::Colo, |r| r.p99_ms);
            let ratio = colo.median / alone.median;
            t.push_str(&format!(
                "- latency goal p99(4) ≤ 1.05 × p99(1): {:.3} vs {:.3} ms = {:.2}× — {}\n",
                colo.median,
                alone.median,
                ratio,
                if ratio <= 1.05 { "met" } else { "NOT met" }
            ));
            let idle = est(results, s, Mode::Alone, |r| r.idle_cpu);
            let off = est(results, s, Mode::Colo, |r| r.offline_cpu);
            let share = off.median / idle.median.max(1e-9);
            t.push_str(&format!(
                "- offline CPU goal ≥ 80 % of the CPU (1) leaves idle: {:.2} of {:.2} cores = {:.0} % — {}\n",
                off.median, idle.median, share * 100.0, if share >= 0.8 { "met" } else { "NOT met" }
            ));
        }
    }
    if !asked(Mode::Static) {
        return t;
    }
    if let Some(why) = unmeasured(&[Mode::Alone, Mode::Static, Mode::Colo]) {
        t.push_str(&format!(
            "- progress goal, colo ≥ static where (3) meets the latency goal {why}\n"
        ));
        return t;
    }
    let stat = est(results, s, Mode::Static, |r| r.p99_ms);
    if stat.median <= 1.05 * alone.median {
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
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(repeats: usize) -> Config {
        Config {
            scenarios: vec![Scenario::Cpu],
            modes: vec![Mode::Alone, Mode::Static, Mode::Colo],
            repeats,
            ..Config::default()
        }
    }

    /// A valid run of `mode`: p99 `p99_ms`, offline progress `progress`/s.
    fn run(mode: Mode, rep: usize, p99_ms: f64, progress: f64) -> RunResult {
        RunResult {
            scenario: Scenario::Cpu,
            mode,
            rep,
            p50_ms: p99_ms / 4.0,
            p99_ms,
            p999_ms: p99_ms * 2.0,
            max_ms: p99_ms * 3.0,
            achieved_rate: 3000.0,
            target_rate: 3000.0,
            errors: 0,
            progress_per_s: progress,
            offline_cpu: if mode == Mode::Alone { 0.0 } else { 1.6 },
            node_util: 1.0,
            idle_cpu: if mode == Mode::Alone { 1.8 } else { 0.0 },
            steal: 0.0,
            agent_cpu_pct: 0.4,
            agent_rss_mib: 13.0,
            actions: 0,
            load_before: 0.1,
            window_s: 35.0,
        }
    }

    fn all_valid() -> Vec<RunResult> {
        vec![
            run(Mode::Alone, 0, 3.8, 0.0),
            run(Mode::Static, 0, 1.0, 1300.0),
            run(Mode::Colo, 0, 1.0, 1340.0),
        ]
    }

    #[test]
    fn goals_from_valid_runs_are_judged() {
        let t = table(&cfg(1), &all_valid(), &[], Duration::from_secs(60));
        assert!(
            t.contains("- latency goal p99(4) ≤ 1.05 × p99(1): 1.000 vs 3.800 ms = 0.26× — met"),
            "{t}"
        );
        assert!(t.contains("= 89 % — met"), "{t}");
        assert!(
            t.contains("colo progress 1340/s vs static 1300/s — met"),
            "{t}"
        );
        assert!(!t.contains(NOT_MEASURED), "{t}");
    }

    #[test]
    fn goals_over_invalid_or_missing_runs_are_not_measured() {
        // The run of (1) served nothing: rejected, so every goal lacks its baseline.
        let mut zero = run(Mode::Alone, 0, 0.0, 0.0);
        zero.achieved_rate = 0.0;
        let rejected = [Rejected {
            run: zero,
            attempt: 1,
            cause: InvalidRun::LowRate {
                achieved: 0.0,
                asked: 3000.0,
            },
        }];
        let valid = &all_valid()[1..];
        let t = table(&cfg(1), valid, &rejected, Duration::from_secs(60));
        assert!(!t.contains("— met"), "{t}");
        assert!(
            t.contains("| (1) alone | NOT measured: no valid run |"),
            "{t}"
        );
        assert!(
            t.contains(
                "- (1) alone rep 0, attempt 1: the service answered 0 req/s of the 3000 asked"
            ),
            "{t}"
        );
        assert!(
            t.contains("- latency goal p99(4) ≤ 1.05 × p99(1) — NOT measured (0 valid of 1 runs of (1) alone)"),
            "{t}"
        );
        assert!(
            t.contains("- offline CPU goal ≥ 80 % of the CPU (1) leaves idle — NOT measured"),
            "{t}"
        );
        assert!(
            t.contains("- progress goal, colo ≥ static where (3) meets the latency goal — NOT measured (0 valid of 1 runs of (1) alone)"),
            "{t}"
        );
        // Nothing ran (the bench stopped before): no goal is judged either.
        let t = table(&cfg(1), &[], &[], Duration::ZERO);
        assert!(!t.contains("— met") && !t.contains("— NOT met"), "{t}");
        assert_eq!(t.matches("— NOT measured").count(), 3, "{t}");
    }

    #[test]
    fn a_goal_needs_every_repetition_asked() {
        // Two repetitions asked, the bench stopped after the first: the one valid run each is not
        // the measurement asked for.
        let t = table(&cfg(2), &all_valid(), &[], Duration::ZERO);
        assert!(!t.contains("— met"), "{t}");
        assert!(
            t.contains("— NOT measured (1 valid of 2 runs of (1) alone; 1 valid of 2 runs of (4) + VMs under colo)"),
            "{t}"
        );
    }

    #[test]
    fn an_invalid_run_is_marked_in_the_csv() {
        let cause = InvalidRun::Errors {
            errors: 500,
            due: 1000,
        };
        let row = csv_row(&run(Mode::Colo, 0, 1.0, 1.0), Some(&cause));
        assert!(
            row.ends_with(
                ",false,\"500 of 1000 requests failed (50.00 %; a valid run allows at most 0.1 %)\""
            ),
            "{row}"
        );
        assert!(csv_row(&run(Mode::Colo, 0, 1.0, 1.0), None).ends_with(",true,\"\""));
        assert_eq!(
            CSV_HEADER.split(',').count(),
            csv_row(&run(Mode::Colo, 0, 1.0, 1.0), None)
                .split(',')
                .count()
        );
    }
}
