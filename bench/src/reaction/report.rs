//! The reaction benchmark's markdown table: percentiles of each measure over the trials, the
//! discarded runs with their causes, and the verdict.

use super::{Config, Discarded, Trial, Trigger};
use crate::validity::{MAX_ERROR_SHARE, MIN_RATE_SHARE, NOT_MEASURED};

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// "met" when every trial has a figure and their p99 is at most 100 ms; "NOT measured" when
/// fewer valid trials ran than were asked (the bench stopped on a trial where nginx did not
/// serve its load).
fn verdict(v: &mut [f64], trials: usize, asked: usize) -> String {
    if trials < asked.max(1) {
        format!("{NOT_MEASURED} ({trials} valid trials of {asked})")
    } else if !v.is_empty() && v.len() == trials && pct(v, 0.99) <= 100.0 {
        "met".into()
    } else {
        "NOT met".into()
    }
}

/// The markdown table.
pub fn table(cfg: &Config, trials: &[Trial], discarded: Discarded) -> String {
    let mut drops: Vec<f64> = trials.iter().filter_map(|t| t.drop_ms).collect();
    let mut rises: Vec<f64> = trials.iter().filter_map(|t| t.rise_ms).collect();
    // How long the offline side took to give way once online asked for more (negative: before
    // the online cgroup's 30 ms average reached its midpoint).
    let mut lags: Vec<f64> = trials
        .iter()
        .filter_map(|t| Some(t.drop_ms? - t.rise_ms?))
        .collect();
    let mut dec: Vec<f64> = trials.iter().filter_map(|t| t.decision_ms).collect();
    let none = trials.len() - drops.len();
    let step = match cfg.trigger {
        Trigger::LoadDoubles => format!(
            "nginx load {:.0} → {:.0} req/s (open loop)",
            cfg.rate,
            cfg.rate * 2.0
        ),
        Trigger::SliBreach => format!(
            "nginx's SLO (p99 1 ms) breached through ReportSli (`coloctl report-sli`, 20 × 5 ms every 200 ms from the step) at a steady {:.0} req/s",
            cfg.rate
        ),
    };
    let pinned = cfg.online_cpus.as_ref().map_or(String::new(), |c| {
        format!(" (nginx and the load generator confined to CPU {c} by a cpuset on the online cgroup; the VMs on every CPU)")
    });
    let mut s = format!(
        "Step: {step}{pinned}, {} × 1-vCPU VMs burning under {} ({}); offline and online cpuacct sampled every 10 ms; {} trials; a drop or rise is the first 30 ms window past the midpoint of the levels in the second before and the second [1 s, 2 s] after the step.\n\n",
        cfg.vms,
        if cfg.low_weight {
            "the low-weight agent root of the headline's modes (3) and (4)"
        } else {
            "an agent root at the default CPU weight"
        },
        if cfg.policy.is_some() {
            "the caller's policy"
        } else {
            "the bench policy: no SCHED_IDLE, CPU squeezed on interference only"
        },
        trials.len()
    );
    s.push_str("| measure | p50 | p99 | max | trials |\n|---|---|---|---|---|\n");
    for (what, v) in [
        ("offline CPU drop to the midpoint (ms)", &mut drops),
        ("online CPU rise (ms)", &mut rises),
        ("offline drop − online rise (ms)", &mut lags),
        ("loop decision: first quota write (ms)", &mut dec),
    ] {
        let max = v.iter().copied().fold(f64::NAN, f64::max);
        s.push_str(&format!(
            "| {what} | {:.0} | {:.0} | {max:.0} | {} |\n",
            pct(v, 0.5),
            pct(v, 0.99),
            v.len()
        ));
    }
    let mean =
        |f: fn(&Trial) -> f64| trials.iter().map(f).sum::<f64>() / trials.len().max(1) as f64;
    s.push_str(&format!(
        "\nOffline CPU before/after the step (mean): {:.2} / {:.2} cores. Online CPU (mean): {:.2} / {:.2} cores. Node idle CPU (mean): {:.2} / {:.2} cores. Trials without a drop of ≥ 0.1 cores: {none}. Runs discarded for CPU used outside the two cgroups or stolen above {:.2} cores: {}. Runs discarded because the node had more than {:.2} idle cores in the second before the step (the VMs were not using all the CPU, so the step needed none of theirs): {}. Runs discarded because nginx did not serve the load (below {:.0} % of the asked rate answered, or more than {:.1} % of requests failed): {}. Goal p99 ≤ 100 ms (offline CPU drop after the step): {}.\n",
        mean(|t| t.before),
        mean(|t| t.after),
        mean(|t| t.online_before),
        mean(|t| t.online_after),
        mean(|t| t.idle_before),
        mean(|t| t.idle_after),
        cfg.max_foreign,
        discarded.foreign,
        cfg.max_idle_before,
        discarded.idle,
        MIN_RATE_SHARE * 100.0,
        MAX_ERROR_SHARE * 100.0,
        discarded.invalid,
        verdict(&mut drops, trials.len(), cfg.trials),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_measure_and_the_verdict() {
        let trial = |drop: f64, rise: f64| Trial {
            before: 1.5,
            after: 1.0,
            drop_ms: Some(drop),
            online_before: 0.4,
            online_after: 0.9,
            rise_ms: Some(rise),
            decision_ms: None,
            p99_ms: 1.0,
            foreign: 0.0,
            idle_before: 0.0,
            idle_after: 0.0,
        };
        let cfg = Config {
            trials: 2,
            ..Config::default()
        };
        let t = table(
            &cfg,
            &[trial(20.0, 10.0), trial(40.0, 40.0)],
            Discarded {
                foreign: 1,
                idle: 2,
                invalid: 3,
            },
        );
        assert!(
            t.contains("| offline CPU drop to the midpoint (ms) | 20 | 40 | 40 | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| online CPU rise (ms) | 10 | 40 | 40 | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| offline drop − online rise (ms) | 0 | 10 | 10 | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| loop decision: first quota write (ms) | NaN | NaN | NaN | 0 |"),
            "{t}"
        );
        assert!(t.contains("above 0.25 cores: 1."), "{t}");
        assert!(
            t.contains("0.25 idle cores in the second before the step (the VMs were not using all the CPU, so the step needed none of theirs): 2."),
            "{t}"
        );
        assert!(
            t.contains(
                "(below 95 % of the asked rate answered, or more than 0.1 % of requests failed): 3."
            ),
            "{t}"
        );
        assert!(t.contains("(offline CPU drop after the step): met."), "{t}");
        // The bench stopped after one trial of the two asked: no verdict from it.
        let t = table(&cfg, &[trial(20.0, 10.0)], Discarded::default());
        assert!(
            t.contains("(offline CPU drop after the step): NOT measured (1 valid trials of 2)."),
            "{t}"
        );
        let t = table(&cfg, &[], Discarded::default());
        assert!(t.contains("NOT measured (0 valid trials of 2)."), "{t}");
    }
}
