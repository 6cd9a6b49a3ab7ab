//! The loop's actions, read from the agent's log (`<RFC 3339 time>  INFO apply job=… action=…
//! [reason]`), each placed in the phase of the online load it fell in: the goal asks for a
//! squeeze in every peak and a release in every trough.

use serde::Serialize;

use super::pgbench::{PhaseKind, PhaseRun};

/// Tighter or looser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A tighter limit, a pause or an eviction.
    Squeeze,
    /// A looser limit or a resume.
    Release,
    /// A fixed setting (a new VM's buckets and memory limit).
    Set,
}

/// One applied action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedAction {
    /// When, µs since the epoch.
    pub at_us: u64,
    /// Its direction.
    pub direction: Direction,
    /// The action with its reason, as logged.
    pub text: String,
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac]Z`, as µs.
pub fn parse_rfc3339_us(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), after H. Hinnant's published algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let digits: String = frac.chars().take(6).collect();
    let micros = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10_i64.pow(6 - digits.len() as u32)
    };
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// The applied actions of an agent log (`observe: would apply` lines are not actions).
pub fn parse_actions(log: &str) -> Vec<LoggedAction> {
    log.lines()
        .filter(|l| l.contains(" apply ") && !l.contains("would apply"))
        .filter_map(|l| {
            let at_us = parse_rfc3339_us(l.split_whitespace().next()?)?;
            let text = l.split_once("action=").map_or(l, |(_, a)| a).trim();
            let direction = if text.starts_with("resume_vm")
                || text.contains(" < ")
                || text.contains("no signal above its low threshold")
            {
                Direction::Release
            } else if text.starts_with("pause_vm")
                || text.starts_with("evict_vm")
                || text.contains(" > ")
                || text.contains("keeping a squeeze")
            {
                Direction::Squeeze
            } else {
                Direction::Set
            };
            Some(LoggedAction {
                at_us,
                direction,
                text: text.to_string(),
            })
        })
        .collect()
}

/// Squeezes and releases in one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhaseActions {
    /// Peak or trough.
    pub kind: PhaseKind,
    /// Squeezes in it.
    pub squeezes: usize,
    /// Releases in it.
    pub releases: usize,
}

/// The squeezes and releases that fell in each phase.
pub fn per_phase(phases: &[PhaseRun], actions: &[LoggedAction]) -> Vec<PhaseActions> {
    phases
        .iter()
        .map(|p| {
            let inside = actions
                .iter()
                .filter(|a| a.at_us >= p.start_us && a.at_us < p.end_us);
            let (mut squeezes, mut releases) = (0, 0);
            for a in inside {
                match a.direction {
                    Direction::Squeeze => squeezes += 1,
                    Direction::Release => releases += 1,
                    Direction::Set => {}
                }
            }
            PhaseActions {
                kind: p.phase.kind,
                squeezes,
                releases,
            }
        })
        .collect()
}

/// Whether every peak holds a squeeze and every trough a release (false with no phases).
pub fn every_phase_acts(p: &[PhaseActions]) -> bool {
    !p.is_empty()
        && p.iter().all(|x| match x.kind {
            PhaseKind::Peak => x.squeezes > 0,
            PhaseKind::Trough => x.releases > 0,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thesis::pgbench::Phase;

    #[test]
    fn rfc3339_times_convert_to_epoch_micros() {
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_us("2026-12-07T09:35:00.123456Z"),
            Some(1_796_636_100_123_456)
        );
        assert_eq!(
            parse_rfc3339_us("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500_000)
        );
        assert_eq!(parse_rfc3339_us("2026-13-07T09:35:00Z"), None);
        assert_eq!(parse_rfc3339_us("yesterday"), None);
    }

    const LOG: &str = "\
2026-12-07T09:35:00.000000Z  INFO apply job=a action=set_vm_io_limit 1 bw=Some(104857600) iops=Some(2000) [vm_limits: policy setting]
2026-12-07T09:35:01.000000Z  INFO apply job=a action=set_vm_io_limit 1 bw=Some(52428800) iops=Some(1000) [vm_io: sli 1.50 > 1.00 (service 0)]
2026-12-07T09:35:02.000000Z  INFO observe: would apply job=a action=set_vm_io_limit 1 bw=None iops=None [vm_io: sli 1.50 > 1.00]
2026-12-07T09:35:11.000000Z  INFO apply job=a action=set_vm_io_limit 1 bw=Some(62914560) iops=Some(1200) [vm_io: sli 0.50 < 0.80 (service 0)]
2026-12-07T09:35:12.000000Z  INFO apply job=- action=resume_vm 1 [pause: no signal above its low threshold]
";

    #[test]
    fn actions_are_read_with_their_direction() {
        let a = parse_actions(LOG);
        assert_eq!(a.len(), 4, "{a:?}");
        assert_eq!(
            a.iter().map(|x| x.direction).collect::<Vec<_>>(),
            [
                Direction::Set,
                Direction::Squeeze,
                Direction::Release,
                Direction::Release
            ]
        );
        assert!(a[1].text.contains("sli 1.50 > 1.00"));
    }

    fn run(kind: PhaseKind, start_s: u64, end_s: u64) -> PhaseRun {
        PhaseRun {
            phase: Phase {
                kind,
                rate: 1.0,
                secs: end_s - start_s,
            },
            start_us: start_s * 1_000_000,
            end_us: end_s * 1_000_000,
            done: 0,
            not_done: 0,
            ok: true,
        }
    }

    #[test]
    fn each_phase_needs_its_own_action() {
        let t0 = 1_796_636_100;
        let a = parse_actions(LOG);
        let phases = [
            run(PhaseKind::Peak, t0, t0 + 10),
            run(PhaseKind::Trough, t0 + 10, t0 + 20),
        ];
        let p = per_phase(&phases, &a);
        assert_eq!((p[0].squeezes, p[0].releases), (1, 0));
        assert_eq!((p[1].squeezes, p[1].releases), (0, 2));
        assert!(every_phase_acts(&p));
        // A second peak without a squeeze fails the goal; no phases at all never passes it.
        let phases = [
            run(PhaseKind::Peak, t0, t0 + 10),
            run(PhaseKind::Trough, t0 + 10, t0 + 20),
            run(PhaseKind::Peak, t0 + 20, t0 + 30),
        ];
        assert!(!every_phase_acts(&per_phase(&phases, &a)));
        assert!(!every_phase_acts(&[]));
    }
}
