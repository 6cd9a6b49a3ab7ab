//! The grammar: accepted forms, unit tables, parsing and formatting, and the spelling a
//! refused value most likely meant.

use super::*;

pub(super) const DURATION_FORMS: &str = "a number and a unit with no space, unit one of ns, us, ms, s, m, h, d; \
     several from the largest unit down (e.g. `50ms`, `1.5s`, `1m30s`)";
pub(super) const SIZE_FORMS: &str = "a number and a unit with no space, unit one of B, KiB, MiB, GiB, TiB \
     (e.g. `512MiB`, `1.5GiB`)";
pub(super) const RATE_FORMS: &str =
    "a size per second, size unit one of B, KiB, MiB, GiB, TiB (e.g. `64MiB/s`)";
pub(super) const STALL_FORMS: &str =
    "stall time per second of wall time, unit one of us, ms, s (e.g. `20ms/s`, `500us/s`)";
pub(super) const PERCENT_FORMS: &str =
    "a number from 0 to 100 followed by `%` (e.g. `25%`, `12.5%`)";
pub(super) const CORES_FORMS: &str =
    "a number of CPU cores (e.g. `0.5`, `2`) or millicores as a string (e.g. `500m`)";

/// Duration units, smallest first, in nanoseconds.
pub(super) const DURATION_UNITS: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Size units, smallest first, in bytes.
pub(super) const SIZE_UNITS: [(&str, u128); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

pub(super) fn split_number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// Splits `s` into (number, unit) terms: a number is digits with at most one inner `.`, a unit
/// the letters up to the next digit. `None` for anything else (signs, spaces, a bare number).
pub(super) fn terms(s: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(end);
        let (int, frac) = number.split_once('.').unwrap_or((number, "0"));
        let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
        if !digits(int) || !digits(frac) {
            return None;
        }
        let uend = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(uend);
        if unit.is_empty() {
            return None;
        }
        out.push((number, unit));
        rest = next;
    }
    (!out.is_empty()).then_some(out)
}

/// `number × per`, exactly, for a decimal `number`; `None` when the result has a fraction.
pub(super) fn exact(number: &str, per: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let mut v = int.parse::<u128>().ok()?.checked_mul(per)?;
    if !frac.is_empty() {
        let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        let part = frac.parse::<u128>().ok()?.checked_mul(per)?;
        if part % scale != 0 {
            return None;
        }
        v = v.checked_add(part / scale)?;
    }
    Some(v)
}

/// Sums terms whose units come from `units` in strictly descending order (each at most once).
pub(super) fn sum_terms(s: &str, units: &[(&str, u128)], compound: bool) -> Option<u128> {
    let terms = terms(s)?;
    if !compound && terms.len() != 1 {
        return None;
    }
    let mut total: u128 = 0;
    let mut last = usize::MAX;
    for (number, unit) in terms {
        let (rank, per) = units
            .iter()
            .enumerate()
            .find(|(_, (u, _))| *u == unit)
            .map(|(i, (_, per))| (i, *per))?;
        if rank >= last {
            return None;
        }
        last = rank;
        total = total.checked_add(exact(number, per)?)?;
    }
    Some(total)
}

pub(super) fn parse_duration_str(s: &str) -> Option<Duration> {
    let nanos = u64::try_from(sum_terms(s, &DURATION_UNITS, true)?).ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Rewrites each unit of `s` (spaces dropped) through `canonical`; `None` if one has no
/// canonical spelling.
pub(super) fn respell(s: &str, canonical: fn(&str) -> Option<&'static str>) -> Option<String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = String::new();
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(end);
        let uend = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(uend);
        out.push_str(number);
        out.push_str(canonical(unit)?);
        rest = next;
    }
    Some(out)
}

pub(super) fn duration_unit(unit: &str) -> Option<&'static str> {
    Some(match unit.to_lowercase().as_str() {
        "ns" | "nsec" | "nanosecond" | "nanoseconds" => "ns",
        "us" | "µs" | "usec" | "microsecond" | "microseconds" => "us",
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        _ => return None,
    })
}

pub(super) fn size_unit(unit: &str) -> Option<&'static str> {
    Some(match unit.to_lowercase().as_str() {
        "b" | "byte" | "bytes" => "B",
        "k" | "kb" | "ki" | "kib" => "KiB",
        "m" | "mb" | "mi" | "mib" => "MiB",
        "g" | "gb" | "gi" | "gib" => "GiB",
        "t" | "tb" | "ti" | "tib" => "TiB",
        _ => return None,
    })
}

/// The accepted spelling `input` most likely meant, if `parses` accepts it.
pub(super) fn suggest(
    input: &str,
    candidate: Option<String>,
    parses: impl Fn(&str) -> bool,
) -> Option<String> {
    candidate.filter(|c| c != input && parses(c))
}

pub(super) fn duration_suggestion(s: &str) -> Option<String> {
    suggest(s, respell(s, duration_unit), |c| {
        parse_duration_str(c).is_some()
    })
}

pub(super) fn size_suggestion(s: &str) -> Option<String> {
    suggest(s, respell(s, size_unit), |c| parse_size_str(c).is_some())
}

pub(super) fn rate_suggestion(s: &str) -> Option<String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let size = ["/s", "/sec", "/second", "ps"]
        .iter()
        .find_map(|suffix| compact.strip_suffix(suffix))?;
    let candidate = respell(size, size_unit).map(|c| format!("{c}/s"));
    suggest(s, candidate, |c| ByteRate::parse(c).is_some())
}

/// Parses a duration such as `50ms`, `1.5s` or `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    parse_duration_str(s).ok_or_else(|| UnitError {
        what: "duration",
        input: s.to_owned(),
        accepted: DURATION_FORMS,
        suggestion: duration_suggestion(s),
    })
}

/// Writes a duration in the largest unit that represents it exactly (`1500ms`, `2s`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, per) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns != 0 && ns.is_multiple_of(per) {
            return format!("{}{unit}", ns / per);
        }
    }
    if ns == 0 {
        "0s".to_owned()
    } else {
        format!("{ns}ns")
    }
}

pub(super) fn parse_size_str(s: &str) -> Option<u64> {
    u64::try_from(sum_terms(s, &SIZE_UNITS, false)?).ok()
}

pub(super) fn format_size(bytes: u64) -> String {
    for (unit, per) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes != 0 && bytes.is_multiple_of(per) {
            return format!("{}{unit}", bytes / per);
        }
    }
    format!("{bytes}B")
}
