//! The thesis benchmark's report: per arm the medians over repetitions with bootstrap 95 %
//! intervals, the static setting the sweep picks, the goal lines, and the run artefacts
//! (`runs.csv`, `runs.json`, `actions.csv`). A goal never divides by a zero or an unmeasured
//! arm: it reads `NOT measured` and says which figure is missing.

use std::path::Path;
use std::time::Duration;

use super::actions::{Direction, every_phase_acts};
use super::{Arm, Config, RunResult};
use crate::host::HostError;
use crate::services::write_file;
use crate::stats::Estimate;

/// Latency goal: online p99 at most this many times alone's.
pub const P99_FACTOR: f64 = 1.20;
/// (4) against the best static setting.
pub const VS_STATIC: f64 = 1.5;
/// (4) against the unthrottled VMs when no static setting meets the latency goal.
pub const VS_UNTHROTTLED: f64 = 0.25;

/// One arm over its repetitions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The arm.
    pub arm: Arm,
    /// Runs.
    pub runs: usize,
    /// p50, ms.
    pub p50: Estimate,
    /// p99, ms.
    pub p99: Estimate,
    /// p99.9, ms.
    pub p999: Estimate,
    /// Offline work units per second.
    pub units: Estimate,
    /// Offline CPU, cores.
    pub offline_cpu: Estimate,
    /// The p99 of every run, ms (the sweep needs each).
    pub p99_each: Vec<f64>,
    /// Squeezes and releases over all runs.
    pub squeezes: usize,
    /// Releases.
    pub releases: usize,
}

/// The summary of `arm` (None without runs).
pub fn summarize(results: &[RunResult], arm: Arm) -> Option<Summary> {
    let runs: Vec<&RunResult> = results.iter().filter(|r| r.arm == arm).collect();
    if runs.is_empty() {
        return None;
    }
    let est =
        |f: fn(&RunResult) -> f64| Estimate::of(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
    let count = |d: Direction| {
        runs.iter()
            .flat_map(|r| &r.actions)
            .filter(|a| a.direction == d)
            .count()
    };
    Some(Summary {
        arm,
        runs: runs.len(),
        p50: est(|r| r.p50_ms),
        p99: est(|r| r.p99_ms),
        p999: est(|r| r.p999_ms),
        units: est(|r| r.units_per_s),
        offline_cpu: est(|r| r.offline_cpu),
        p99_each: runs.iter().map(|r| r.p99_ms).collect(),
        squeezes: count(Direction::Squeeze),
        releases: count(Direction::Release),
    })
}

/// The static setting of (3) with the most offline throughput whose p99 met the latency goal
/// (≤ 1.20 × `alone_p99`) in every repetition; None when none did (or alone is unmeasured).
pub fn best_static(summaries: &[Summary], alone_p99: f64) -> Option<&Summary> {
    if !(alone_p99 > 0.0 && alone_p99.is_finite()) {
        return None;
    }
    summaries
        .iter()
        .filter(|s| matches!(s.arm, Arm::Static { .. }))
        .filter(|s| {
            !s.p99_each.is_empty() && s.p99_each.iter().all(|p| *p <= P99_FACTOR * alone_p99)
        })
        .max_by(|a, b| a.units.median.total_cmp(&b.units.median))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The goal lines, one per goal, as the headline prints them.
pub fn goals(cfg: &Config, results: &[RunResult]) -> String {
    let summaries: Vec<Summary> = cfg
        .arms()
        .into_iter()
        .filter_map(|a| summarize(results, a))
        .collect();
    let get = |a: Arm| summaries.iter().find(|s| s.arm == a);
    let mut t = String::new();
    let alone = get(Arm::Alone).map(|s| s.p99.median).filter(|p| *p > 0.0);
    let colo = get(Arm::Colo);
    let g1 = "(4): online p99 ≤ 1.20 × alone (PostgreSQL; the memory-sensitive service is not in this benchmark yet)";
    let colo_meets = match (alone, colo) {
        (Some(a), Some(c)) => {
            let ok = c.p99.median <= P99_FACTOR * a;
            t.push_str(&format!(
                "- {g1}: {:.2} vs {:.2} ms = {:.2}× — {}\n",
                c.p99.median,
                a,
                c.p99.median / a,
                verdict(ok)
            ));
            Some(ok)
        }
        _ => {
            t.push_str(&format!(
                "- {g1} — NOT measured ({} has no runs with transactions)\n",
                if alone.is_none() { "alone" } else { "(4)" }
            ));
            None
        }
    };
    let g2 = "(4) gives ≥ 1.5 × the offline throughput of the best static setting (3) at a p99 that meets the same goal";
    match (alone, colo, colo_meets) {
        (Some(a), Some(c), Some(meets)) => match best_static(&summaries, a) {
            Some(s) if s.units.median > 0.0 => {
                let ratio = c.units.median / s.units.median;
                t.push_str(&format!(
                    "- {g2}: best static {} gives {:.2} units/s, (4) {:.2} units/s = {:.2}× at p99 {:.2} ms ({}) — {}\n",
                    s.arm.key(),
                    s.units.median,
                    c.units.median,
                    ratio,
                    c.p99.median,
                    if meets { "meets the goal" } else { "misses the goal" },
                    verdict(meets && ratio >= VS_STATIC)
                ));
            }
            Some(s) => t.push_str(&format!(
                "- {g2}: best static {} meets the goal at 0 units/s, so no ratio; (4) gives {:.2} units/s ({}) — {}\n",
                s.arm.key(),
                c.units.median,
                if meets { "meets the goal" } else { "misses the goal" },
                verdict(meets && c.units.median > 0.0)
            )),
            None => {
                let g2b = "no static setting meets the goal, so (4) meets it while giving ≥ 25 % of the VMs' unthrottled throughput";
                match get(Arm::Unthrottled).map(|u| u.units.median) {
                    Some(u) if u > 0.0 => {
                        let share = c.units.median / u;
                        t.push_str(&format!(
                            "- {g2b}: (4) {:.2} of {:.2} units/s = {:.0} % at p99 {:.2} ms — {}\n",
                            c.units.median,
                            u,
                            share * 100.0,
                            c.p99.median,
                            verdict(meets && share >= VS_UNTHROTTLED)
                        ));
                    }
                    Some(_) => t.push_str(&format!(
                        "- {g2b} — NOT measured (the unthrottled VMs did 0 units/s: no reference)\n"
                    )),
                    None => t.push_str(&format!(
                        "- {g2b} — NOT measured (no unthrottled arm in this run)\n"
                    )),
                }
            }
        },
        _ => t.push_str(&format!("- {g2} — NOT measured (needs alone and (4))\n")),
    }
    let g3 =
        "(4)'s action log shows at least one squeeze in every peak and one release in every trough";
    let colo_runs: Vec<&RunResult> = results.iter().filter(|r| r.arm == Arm::Colo).collect();
    if colo_runs.is_empty() {
        t.push_str(&format!("- {g3} — NOT measured (no runs of (4))\n"));
    } else {
        let good = colo_runs
            .iter()
            .filter(|r| every_phase_acts(&r.phases))
            .count();
        t.push_str(&format!(
            "- {g3}: {good} of {} runs — {}\n",
            colo_runs.len(),
            verdict(good == colo_runs.len())
        ));
    }
    let g4 = "(1) and (2) show what a best-effort container does";
    match (alone, get(Arm::Container), get(Arm::ContainerCapped)) {
        (Some(a), Some(c1), Some(c2)) => t.push_str(&format!(
            "- {g4}: (1) p99 {:.2}× alone, {:.2} units/s; (2) p99 {:.2}× alone, {:.2} units/s — met\n",
            c1.p99.median / a,
            c1.units.median,
            c2.p99.median / a,
            c2.units.median
        )),
        _ => t.push_str(&format!("- {g4} — NOT measured (needs alone, (1) and (2))\n")),
    }
    t
}

/// The markdown table, the sweep's pick and the goal lines.
pub fn table(cfg: &Config, results: &[RunResult], elapsed: Duration) -> String {
    let mut t = format!(
        "## colo-bench thesis: PostgreSQL (pgbench TPC-B-like, scale {}, {} clients, open loop {} tps peak / {} tps trough, {} × {} s each) beside {} offline jobs\n\n",
        cfg.scale,
        cfg.clients,
        cfg.peak_rate,
        cfg.trough_rate,
        cfg.cycles * 2,
        cfg.phase_secs,
        cfg.jobs
    );
    t.push_str(&format!(
        "Work unit: {} MiB written (+ {} MiB touched per unit in a container, once per VM; {} CPU units). Medians over repetitions [bootstrap 95 %]; latency over all phases, incl. schedule lag.\n\n",
        cfg.unit.io_mib, cfg.unit.mem_mib, cfg.unit.cpu_units
    ));
    t.push_str("| arm | runs | p50 ms | p99 ms | p99.9 ms | p99 ÷ alone | work units/s | offline cores | squeezes / releases |\n|---|---|---|---|---|---|---|---|---|\n");
    let alone = summarize(results, Arm::Alone).map(|s| s.p99.median);
    for arm in cfg.arms() {
        let Some(s) = summarize(results, arm) else {
            continue;
        };
        let ratio = match alone {
            Some(a) if a > 0.0 => format!("{:.2}", s.p99.median / a),
            _ => "–".into(),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {ratio} | {} | {} | {} / {} |\n",
            arm.name(),
            s.runs,
            s.p50.show(2),
            s.p99.show(2),
            s.p999.show(2),
            s.units.show(2),
            s.offline_cpu.show(2),
            s.squeezes,
            s.releases
        ));
    }
    let summaries: Vec<Summary> = cfg
        .arms()
        .into_iter()
        .filter_map(|a| summarize(results, a))
        .collect();
    t.push_str(&format!(
        "\nStatic sweep (coarse: buckets {:?} MiB/s × quotas {:?} millicores): best setting meeting p99 ≤ 1.20 × alone in every repetition: {}\n",
        cfg.buckets_mib,
        cfg.quotas_milli,
        alone
            .and_then(|a| best_static(&summaries, a))
            .map_or("none".to_string(), |s| s.arm.name())
    ));
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for a in results
        .iter()
        .filter(|r| r.arm == Arm::Colo)
        .flat_map(|r| &r.actions)
    {
        let why = a
            .text
            .rsplit_once('[')
            .map_or("", |(_, w)| w)
            .trim_end_matches(']');
        // The rule and the signal, without the value that changes every time.
        let key = format!(
            "{:?} {}",
            a.direction,
            why.split(|c: char| c.is_ascii_digit())
                .next()
                .unwrap_or(why)
                .trim()
        );
        match reasons.iter_mut().find(|(k, _)| *k == key) {
            Some(r) => r.1 += 1,
            None => reasons.push((key, 1)),
        }
    }
    if !reasons.is_empty() {
        t.push_str("\n(4)'s actions by reason (all runs; each in actions.csv):\n");
        for (k, n) in &reasons {
            t.push_str(&format!("- {n} × {k}\n"));
        }
    }
    let steal = results.iter().map(|r| r.steal).fold(0.0, f64::max);
    let loads: Vec<f64> = results.iter().map(|r| r.load_before).collect();
    t.push_str(&format!(
        "\nRuns {}, {:.0} s; highest steal {:.1} %; load average before the runs {:.2}–{:.2}.\n\n",
        results.len(),
        elapsed.as_secs_f64(),
        steal * 100.0,
        loads.iter().copied().fold(f64::INFINITY, f64::min),
        loads.iter().copied().fold(0.0, f64::max)
    ));
    t.push_str(&goals(cfg, results));
    t
}

/// Writes `runs.csv`, `runs.json` and `actions.csv` for the runs so far.
pub(super) fn write_artefacts(dir: &Path, results: &[RunResult]) -> Result<(), HostError> {
    let mut csv = String::from(
        "arm,rep,p50_ms,p99_ms,p999_ms,txns,not_done,units_per_s,offline_cpu_cores,steal,load_before,window_s,squeezes,releases\n",
    );
    let mut actions = String::from("arm,rep,at_us,direction,action\n");
    for r in results {
        let d = |x: Direction| r.actions.iter().filter(|a| a.direction == x).count();
        csv.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4},{},{},{:.4},{:.4},{:.4},{:.2},{:.2},{},{}\n",
            r.arm.key(),
            r.rep,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.txns,
            r.not_done,
            r.units_per_s,
            r.offline_cpu,
            r.steal,
            r.load_before,
            r.window_s,
            d(Direction::Squeeze),
            d(Direction::Release)
        ));
        for a in &r.actions {
            actions.push_str(&format!(
                "{},{},{},{:?},\"{}\"\n",
                r.arm.key(),
                r.rep,
                a.at_us,
                a.direction,
                a.text.replace('"', "'")
            ));
        }
    }
    write_file(&dir.join("runs.csv"), &csv)?;
    write_file(&dir.join("actions.csv"), &actions)?;
    let json = serde_json::to_string_pretty(results)
        .map_err(|e| HostError::Missing(format!("runs.json: {e}")))?;
    write_file(&dir.join("runs.json"), &json)
}

#[cfg(test)]
mod tests;
