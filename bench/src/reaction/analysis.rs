//! What a trial's samples and the agent's log say: the reaction (a 30 ms rate crossing the
//! midpoint between the levels before and after the step), the CPU used outside both cgroups,
//! and the time of the loop's first quota write.

use std::path::Path;

use super::sampling::Sample;
use crate::host::CpuSnap;
use crate::loadgen::mono_ns;

/// Cores used on the node between two snapshots outside the online and offline cgroups (their
/// use from the first and last sample), plus steal.
pub(super) fn foreign_cores(samples: &[Sample], a: CpuSnap, b: CpuSnap) -> f64 {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return f64::NAN;
    };
    let wall = last.0.saturating_sub(first.0) as f64;
    let span = b.total_ns.saturating_sub(a.total_ns) as f64 / f64::from(a.cpus.max(1));
    if wall <= 0.0 || span <= 0.0 {
        return f64::NAN;
    }
    let ours = (last.1.saturating_sub(first.1) + last.2.saturating_sub(first.2)) as f64 / wall;
    let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64 / span;
    let steal = b.steal_ns.saturating_sub(a.steal_ns) as f64 / span;
    (busy - ours).max(0.0) + steal
}

/// Mean rate (cores) over `[a, b]` (mono ns) from the samples.
pub(super) fn mean_rate(s: &[(u64, u64)], a: u64, b: u64) -> Option<f64> {
    let first = s.iter().find(|(t, _)| *t >= a)?;
    let last = s.iter().rev().find(|(t, _)| *t <= b)?;
    (last.0 > first.0).then(|| (last.1 - first.1) as f64 / (last.0 - first.0) as f64)
}

/// The reaction of one trial (see the module docs): offline CPU before and after the step
/// (cores) and when it fell to the midpoint, ms after the step.
pub fn analyse(samples: &[(u64, u64)], step: u64) -> (f64, f64, Option<f64>) {
    crossing(samples, step, true)
}

/// Level before the step, level after it, and the first time (ms after the step) the 30 ms rate
/// crossed the midpoint: downwards when `falling`, else upwards. `None` when the level moved by
/// less than 0.1 cores in that direction.
pub(super) fn crossing(
    samples: &[(u64, u64)],
    step: u64,
    falling: bool,
) -> (f64, f64, Option<f64>) {
    let s = 1_000_000_000;
    let before = mean_rate(samples, step.saturating_sub(s), step).unwrap_or(0.0);
    let after = mean_rate(samples, step + s, step + 2 * s).unwrap_or(0.0);
    let moved = if falling {
        before - after
    } else {
        after - before
    };
    if moved < 0.1 {
        return (before, after, None);
    }
    let mid = (before + after) / 2.0;
    let at = window_rates(samples, step)
        .find(|&(_, r)| (falling && r <= mid) || (!falling && r >= mid))
        .map(|(t, _)| (t - step) as f64 / 1e6);
    (before, after, at)
}

/// The 30 ms rate (cores) at each sample from `from` on, with the sample's time.
pub(super) fn window_rates(
    samples: &[(u64, u64)],
    from: u64,
) -> impl Iterator<Item = (u64, f64)> + '_ {
    let w = 30_000_000;
    samples.iter().enumerate().filter_map(move |(i, &(t, u))| {
        if t < from {
            return None;
        }
        let &(t0, u0) = samples[..i].iter().rev().find(|(x, _)| t - *x >= w)?;
        Some((t, u.saturating_sub(u0) as f64 / (t - t0) as f64))
    })
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, ns (to place the agent's log lines on the sampler's clock).
pub(super) fn realtime_offset() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let rt = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
    rt - i128::from(mono_ns())
}

/// Unix ns of an RFC 3339 UTC timestamp `2026-11-28T20:00:41.491987Z`.
pub(super) fn parse_utc(ts: &str) -> Option<i128> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac_ns: i128 = format!("{frac:0<9}")[..9].parse().ok()?;
    Some(i128::from(days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000 + frac_ns)
}

/// First CPU quota write (group or per-VM vCPU) the agent applied after `step` (mono ns), ms
/// after it.
pub(super) fn decision_ms(log: &Path, step: u64, offset: i128) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let step_rt = i128::from(step) + offset;
    text.lines()
        .filter(|l| {
            l.contains(" apply ")
                && (l.contains("set_offline_cpu_quota") || l.contains("set_vm_vcpu_quota"))
        })
        .filter_map(|l| parse_utc(l.split_whitespace().next()?))
        .find(|t| *t >= step_rt)
        .map(|t| (t - step_rt) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_drop_is_found_at_the_right_time() {
        // 1.5 cores until 40 ms after the step, then 0.5 cores.
        let step = 10_000_000_000u64;
        let mut s = Vec::new();
        let mut u = 0u64;
        let mut t = step - 2_000_000_000;
        while t < step + 3_000_000_000 {
            s.push((t, u));
            let rate = if t < step + 40_000_000 { 1.5 } else { 0.5 };
            u += (rate * 10_000_000.0) as u64;
            t += 10_000_000;
        }
        let (b, a, d) = analyse(&s, step);
        assert!((b - 1.5).abs() < 0.01 && (a - 0.5).abs() < 0.01, "{b} {a}");
        let d = d.unwrap();
        assert!((50.0..=80.0).contains(&d), "{d}");
        // No drop: reported as such.
        let flat: Vec<(u64, u64)> = (0..500u64)
            .map(|i| (step - 2_000_000_000 + i * 10_000_000, i * 10_000_000))
            .collect();
        assert_eq!(analyse(&flat, step).2, None);
    }

    /// Cumulative samples every 10 ms from 2 s before `step` to 3 s after, at `rate(ms from the
    /// step)` cores.
    fn series(step: u64, rate: impl Fn(i64) -> f64) -> Vec<(u64, u64)> {
        let mut s = Vec::new();
        let mut u = 0u64;
        let mut t = step - 2_000_000_000;
        while t < step + 3_000_000_000 {
            s.push((t, u));
            let ms = (i128::from(t) - i128::from(step)) as i64 / 1_000_000;
            u += (rate(ms) * 10_000_000.0) as u64;
            t += 10_000_000;
        }
        s
    }

    #[test]
    fn a_two_stage_drop_reaches_the_midpoint_in_its_second_stage() {
        let step = 10_000_000_000u64;
        // 1.6 cores; 1.3 from 20 ms after the step (first stage); 0.8 from 300 ms (second).
        let s = series(step, |ms| match ms {
            ..20 => 1.6,
            20..300 => 1.3,
            _ => 0.8,
        });
        let (_, _, mid) = analyse(&s, step);
        let mid = mid.unwrap();
        assert!((300.0..=340.0).contains(&mid), "{mid}");
    }

    #[test]
    fn the_online_rise_is_found_upwards() {
        let step = 10_000_000_000u64;
        let s = series(step, |ms| if ms < 50 { 0.4 } else { 0.9 });
        let (b, a, rise) = crossing(&s, step, false);
        assert!((b - 0.4).abs() < 0.01 && (a - 0.9).abs() < 0.01, "{b} {a}");
        let rise = rise.unwrap();
        assert!((60.0..=90.0).contains(&rise), "{rise}");
        // Falling series: no rise.
        let s = series(step, |ms| if ms < 50 { 0.9 } else { 0.4 });
        assert_eq!(crossing(&s, step, false).2, None);
    }

    #[test]
    fn foreign_cpu_is_what_the_node_used_outside_both_cgroups_plus_steal() {
        // 1 s, 2 CPUs: the node was busy 1.8 cores, offline used 1.0 and online 0.5, 0.1 stolen.
        let samples = vec![
            (0u64, 0u64, 0u64, 0u64, 0u64),
            (1_000_000_000, 1_000_000_000, 500_000_000, 0, 0),
        ];
        let a = CpuSnap {
            busy_ns: 0,
            steal_ns: 0,
            total_ns: 0,
            cpus: 2,
        };
        let b = CpuSnap {
            busy_ns: 1_800_000_000,
            steal_ns: 100_000_000,
            total_ns: 2_000_000_000,
            cpus: 2,
        };
        let f = foreign_cores(&samples, a, b);
        assert!((f - 0.4).abs() < 1e-9, "{f}");
        assert!(foreign_cores(&[], a, b).is_nan());
    }

    #[test]
    fn log_timestamps_parse() {
        assert_eq!(parse_utc("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_utc("2000-03-01T00:00:00.000001Z"),
            Some(951_868_800_000_001_000)
        );
        assert_eq!(parse_utc("garbage"), None);
    }
}
