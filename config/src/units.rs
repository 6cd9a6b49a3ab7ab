//! Units written as strict human strings: durations `50ms`, `1.5s`, `1m30s`; sizes `512MiB`,
//! `1.5GiB`; byte rates `64MiB/s`; stall rates `20ms/s`; percentages `25%`; CPU amounts `0.5` or
//! `500m`. This is colo's one grammar for them: agent.yaml, policy files, job files, coloctl's
//! flags and colo-scheduler's flags all parse with it.
//!
//! A number with no unit is refused for every quantity that has one, so `period: 50` can never
//! silently mean 50 seconds; a value must be a whole number of nanoseconds (bytes); every parse
//! error lists the accepted forms, and suggests the spelling it most likely meant (`5 sec` →
//! `5s`, `100Mi/s` → `100MiB/s`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a unit string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} `{input}`: expected {accepted}{}",
    .suggestion.as_deref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()
)]
pub struct UnitError {
    /// The quantity ("duration", "size", …).
    pub what: &'static str,
    /// The text that was given.
    pub input: String,
    /// The accepted forms.
    pub accepted: &'static str,
    /// The accepted spelling the input most likely meant, where there is one.
    pub suggestion: Option<String>,
}

const DURATION_FORMS: &str = "a number and a unit with no space, unit one of ns, us, ms, s, m, h, d; \
     several from the largest unit down (e.g. `50ms`, `1.5s`, `1m30s`)";
const SIZE_FORMS: &str = "a number and a unit with no space, unit one of B, KiB, MiB, GiB, TiB \
     (e.g. `512MiB`, `1.5GiB`)";
const RATE_FORMS: &str =
    "a size per second, size unit one of B, KiB, MiB, GiB, TiB (e.g. `64MiB/s`)";
const STALL_FORMS: &str =
    "stall time per second of wall time, unit one of us, ms, s (e.g. `20ms/s`, `500us/s`)";
const PERCENT_FORMS: &str = "a number from 0 to 100 followed by `%` (e.g. `25%`, `12.5%`)";
const CORES_FORMS: &str =
    "a number of CPU cores (e.g. `0.5`, `2`) or millicores as a string (e.g. `500m`)";

/// Duration units, smallest first, in nanoseconds.
const DURATION_UNITS: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Size units, smallest first, in bytes.
const SIZE_UNITS: [(&str, u128); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

fn split_number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// Splits `s` into (number, unit) terms: a number is digits with at most one inner `.`, a unit
/// the letters up to the next digit. `None` for anything else (signs, spaces, a bare number).
fn terms(s: &str) -> Option<Vec<(&str, &str)>> {
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
fn exact(number: &str, per: u128) -> Option<u128> {
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
fn sum_terms(s: &str, units: &[(&str, u128)], compound: bool) -> Option<u128> {
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

fn parse_duration_str(s: &str) -> Option<Duration> {
    let nanos = u64::try_from(sum_terms(s, &DURATION_UNITS, true)?).ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Rewrites each unit of `s` (spaces dropped) through `canonical`; `None` if one has no
/// canonical spelling.
fn respell(s: &str, canonical: fn(&str) -> Option<&'static str>) -> Option<String> {
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

fn duration_unit(unit: &str) -> Option<&'static str> {
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

fn size_unit(unit: &str) -> Option<&'static str> {
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
fn suggest(
    input: &str,
    candidate: Option<String>,
    parses: impl Fn(&str) -> bool,
) -> Option<String> {
    candidate.filter(|c| c != input && parses(c))
}

fn duration_suggestion(s: &str) -> Option<String> {
    suggest(s, respell(s, duration_unit), |c| {
        parse_duration_str(c).is_some()
    })
}

fn size_suggestion(s: &str) -> Option<String> {
    suggest(s, respell(s, size_unit), |c| parse_size_str(c).is_some())
}

fn rate_suggestion(s: &str) -> Option<String> {
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

fn parse_size_str(s: &str) -> Option<u64> {
    u64::try_from(sum_terms(s, &SIZE_UNITS, false)?).ok()
}

fn format_size(bytes: u64) -> String {
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

/// Serde and JSON-schema support for `std::time::Duration` fields written as `50ms`.
pub mod duration {
    use super::*;

    /// Serializes as `50ms`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Deserializes from `50ms`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(StrVisitor {
            what: "a duration such as `50ms`",
            parse: parse_duration,
        })
    }

    /// The JSON-schema stand-in for a duration field (`#[schemars(with = ...)]`).
    #[derive(Debug)]
    pub struct Schema;

    impl JsonSchema for Schema {
        fn schema_name() -> Cow<'static, str> {
            "Duration".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
            json_schema!({
                "type": "string",
                "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h|d))+$",
                "description": DURATION_FORMS,
            })
        }
    }
}

/// A duration where a `with` attribute cannot reach (inside generic types), written `50ms`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct DurationValue(#[serde(with = "duration")] pub Duration);

impl JsonSchema for DurationValue {
    fn schema_name() -> Cow<'static, str> {
        duration::Schema::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        duration::Schema::json_schema(generator)
    }
}

impl fmt::Display for DurationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// Serde support for `Option<Duration>` fields written as `50ms` or `null`.
pub mod option_duration {
    use super::*;

    /// Serializes as `50ms` or `null`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from `50ms` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::duration")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

struct StrVisitor<T> {
    what: &'static str,
    parse: fn(&str) -> Result<T, UnitError>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

macro_rules! string_unit {
    ($ty:ident, $what:literal, $example:literal, $forms:ident, $pattern:literal, $suggest:expr) => {
        impl FromStr for $ty {
            type Err = UnitError;
            fn from_str(s: &str) -> Result<Self, UnitError> {
                Self::parse(s).ok_or_else(|| UnitError {
                    what: $what,
                    input: s.to_owned(),
                    accepted: $forms,
                    suggestion: $suggest(s),
                })
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(StrVisitor {
                    what: concat!("a ", $what, " such as `", $example, "`"),
                    parse: $ty::from_str,
                })
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern, "description": $forms })
            }
        }
    };
}

/// A percentage from 0 % to 100 %, written `25%` or `12.5%`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(f64);

impl Percent {
    /// A percentage; `None` unless `0 <= value <= 100`.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(Self(value))
    }

    /// The value in percent (`25.0` for 25 %).
    pub fn value(self) -> f64 {
        self.0
    }

    /// The value as a fraction (`0.25` for 25 %).
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }

    fn parse(s: &str) -> Option<Self> {
        let number = s.strip_suffix('%')?;
        let valid = !number.is_empty()
            && number.chars().all(|c| c.is_ascii_digit() || c == '.')
            && number.matches('.').count() <= 1
            && !number.starts_with('.')
            && !number.ends_with('.');
        if !valid {
            return None;
        }
        Self::new(number.parse().ok()?)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

string_unit!(
    Percent,
    "percentage",
    "25%",
    PERCENT_FORMS,
    "^[0-9]+(\\.[0-9]+)?%$",
    |s: &str| suggest(s, Some(format!("{}%", s.trim())), |c| Percent::parse(c)
        .is_some())
);

/// An amount of memory or disk in bytes, written `512MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// A size of `n` MiB.
    pub const fn mib(n: u64) -> Self {
        Self(n << 20)
    }

    fn parse(s: &str) -> Option<Self> {
        parse_size_str(s).map(Self)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

string_unit!(
    ByteSize,
    "size",
    "512MiB",
    SIZE_FORMS,
    "^[0-9]+(\\.[0-9]+)?(B|KiB|MiB|GiB|TiB)$",
    size_suggestion
);

/// A data rate in bytes per second, written `64MiB/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteRate(pub u64);

impl ByteRate {
    /// The rate in bytes per second.
    pub fn bytes_per_sec(self) -> u64 {
        self.0
    }

    /// A rate of `n` MiB/s.
    pub const fn mib_per_sec(n: u64) -> Self {
        Self(n << 20)
    }

    fn parse(s: &str) -> Option<Self> {
        parse_size_str(s.strip_suffix("/s")?).map(Self)
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", format_size(self.0))
    }
}

string_unit!(
    ByteRate,
    "rate",
    "64MiB/s",
    RATE_FORMS,
    "^[0-9]+(\\.[0-9]+)?(B|KiB|MiB|GiB|TiB)/s$",
    rate_suggestion
);

/// Stall (or wait) time per second of wall time, written `20ms/s`: 20 ms of every second spent
/// stalled, i.e. 2 %. Used for PSI `total` deltas and run-queue delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StallRate(u64);

impl StallRate {
    /// A stall rate of `nanos` nanoseconds per second.
    pub const fn from_nanos_per_sec(nanos: u64) -> Self {
        Self(nanos)
    }

    /// A stall rate of `ms` milliseconds per second.
    pub const fn from_millis_per_sec(ms: u64) -> Self {
        Self(ms * 1_000_000)
    }

    /// Nanoseconds of stall per second.
    pub fn nanos_per_sec(self) -> u64 {
        self.0
    }

    /// The rate as a fraction of wall time (`0.02` for `20ms/s`); above 1 where many tasks wait
    /// at once (run-queue delay is summed over a service's tasks).
    pub fn fraction(self) -> f64 {
        self.0 as f64 / 1e9
    }

    fn parse(s: &str) -> Option<Self> {
        // One term, in us, ms or s (`20ms/s`, `1.5ms/s`), per second.
        let units = &DURATION_UNITS[1..4];
        let nanos = sum_terms(s.strip_suffix("/s")?, units, false)?;
        Some(Self(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

impl fmt::Display for StallRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = format_duration(Duration::from_nanos(self.0));
        write!(f, "{d}/s")
    }
}

string_unit!(
    StallRate,
    "stall rate",
    "20ms/s",
    STALL_FORMS,
    "^[0-9]+(\\.[0-9]+)?(us|ms|s)/s$",
    |s: &str| {
        let per_second = if s.contains('/') {
            None
        } else {
            Some(format!("{s}/s"))
        };
        suggest(s, per_second, |c| StallRate::parse(c).is_some())
    }
);

/// An amount of CPU in cores: `0.5`, `2`, or `"500m"` (millicores).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Cores(f64);

impl Cores {
    /// An amount of CPU; `None` unless finite and `>= 0`.
    pub fn new(cores: f64) -> Option<Self> {
        (cores.is_finite() && cores >= 0.0).then_some(Self(cores))
    }

    /// The amount in cores.
    pub fn get(self) -> f64 {
        self.0
    }

    fn parse(s: &str) -> Option<Self> {
        let (digits, unit) = split_number(s)?;
        match unit {
            "m" => Self::new(digits.parse::<u64>().ok()? as f64 / 1000.0),
            _ => None,
        }
    }
}

impl fmt::Display for Cores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cores {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        s.parse::<f64>()
            .ok()
            .and_then(Self::new)
            .or_else(|| Self::parse(s))
            .ok_or_else(|| UnitError {
                what: "CPU amount",
                input: s.to_owned(),
                accepted: CORES_FORMS,
                suggestion: None,
            })
    }
}

impl Serialize for Cores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Cores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Cores;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CPU amount such as `0.5` or `500m`")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cores, E> {
                Cores::new(v).ok_or_else(|| {
                    E::custom(format!("invalid CPU amount `{v}`: expected {CORES_FORMS}"))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cores, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cores, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cores, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Cores {
    fn schema_name() -> Cow<'static, str> {
        "Cores".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+m$" }
            ],
            "description": CORES_FORMS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_and_refuse_bare_numbers() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for bad in [
            "50", "50 ms", "ms", "-1s", "+1s", "50msec", "5S", "", "1.5", ".5s", "5.s", "1..5s",
            "1h30", "s1",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("e.g. `50ms`"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_compound_and_decimal() {
        let d = |s: &str| parse_duration(s).unwrap();
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("0.5ms"), Duration::from_micros(500));
        assert_eq!(d("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(d("1h0m5.25s"), Duration::from_millis(3_605_250));
        assert_eq!(d("1.000000001s"), Duration::from_nanos(1_000_000_001));
        // Units from the largest down, each once; nothing finer than a nanosecond.
        for bad in ["1s1m", "1m1m", "30s1h", "1.5ns", "0.0000000001s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        // Beyond what a Duration of nanoseconds in u64 holds (about 584 years).
        assert!(parse_duration("1000000d").is_err());
    }

    #[test]
    fn mistakes_get_the_spelling_they_meant() {
        let hint = |s: &str| parse_duration(s).unwrap_err().suggestion;
        assert_eq!(hint("5 sec").as_deref(), Some("5s"));
        assert_eq!(hint("50msec").as_deref(), Some("50ms"));
        assert_eq!(hint("2 hours").as_deref(), Some("2h"));
        assert_eq!(hint("1min30sec").as_deref(), Some("1m30s"));
        assert_eq!(hint("5S").as_deref(), Some("5s"));
        assert_eq!(hint("50"), None, "a bare number has no one meaning");
        assert_eq!(hint("1s1m"), None);
        let e = "100Mi/s".parse::<ByteRate>().unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("100MiB/s"));
        assert!(e.to_string().ends_with("; did you mean `100MiB/s`?"), "{e}");
        let rate = |s: &str| s.parse::<ByteRate>().unwrap_err().suggestion;
        assert_eq!(rate("100MB/s").as_deref(), Some("100MiB/s"));
        assert_eq!(rate("100MBps").as_deref(), Some("100MiB/s"));
        assert_eq!(rate("64 MiB/sec").as_deref(), Some("64MiB/s"));
        let size = |s: &str| s.parse::<ByteSize>().unwrap_err().suggestion;
        assert_eq!(size("512MB").as_deref(), Some("512MiB"));
        assert_eq!(size("512mib").as_deref(), Some("512MiB"));
        assert_eq!(size("4G").as_deref(), Some("4GiB"));
        assert_eq!(size("512"), None);
        let stall = "20ms".parse::<StallRate>().unwrap_err();
        assert_eq!(stall.suggestion.as_deref(), Some("20ms/s"));
        let pct = "25".parse::<Percent>().unwrap_err();
        assert_eq!(pct.suggestion.as_deref(), Some("25%"));
    }

    #[test]
    fn percentages_are_bounded_and_need_the_sign() {
        assert_eq!("25%".parse::<Percent>().unwrap().fraction(), 0.25);
        assert_eq!("12.5%".parse::<Percent>().unwrap().to_string(), "12.5%");
        assert_eq!("100%".parse::<Percent>().unwrap().value(), 100.0);
        for bad in [
            "25", "101%", "-5%", "%", ".5%", "5.%", "1e2%", "25 %", "nan%",
        ] {
            assert!(bad.parse::<Percent>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_rates_use_binary_units() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().bytes(), 512 << 20);
        assert_eq!(ByteSize(3 << 30).to_string(), "3GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(
            "64MiB/s".parse::<ByteRate>().unwrap().bytes_per_sec(),
            64 << 20
        );
        assert_eq!(ByteRate::mib_per_sec(8).to_string(), "8MiB/s");
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap().bytes(), 3 << 29);
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap().bytes(), 1536);
        assert_eq!(
            "2.5MiB/s".parse::<ByteRate>().unwrap().bytes_per_sec(),
            5 << 19
        );
        for bad in [
            "512",
            "512MB",
            "512mib",
            "0.5B",
            "64MiB/sec",
            "1GiB512MiB",
            "-1GiB",
        ] {
            assert!(
                bad.parse::<ByteSize>().is_err() && bad.parse::<ByteRate>().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn stall_rates_are_time_per_second() {
        assert_eq!("20ms/s".parse::<StallRate>().unwrap().fraction(), 0.02);
        assert_eq!(
            "500us/s".parse::<StallRate>().unwrap().nanos_per_sec(),
            500_000
        );
        assert_eq!("2s/s".parse::<StallRate>().unwrap().fraction(), 2.0);
        assert_eq!(StallRate::from_millis_per_sec(20).to_string(), "20ms/s");
        assert_eq!(
            "1.5ms/s".parse::<StallRate>().unwrap().nanos_per_sec(),
            1_500_000
        );
        assert_eq!("0.5s/s".parse::<StallRate>().unwrap().fraction(), 0.5);
        for bad in ["20ms", "20", "2%", "20m/s", "1h/s", "20 ms/s", "1s500ms/s"] {
            assert!(bad.parse::<StallRate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cores_accept_numbers_and_millicores() {
        assert_eq!("0.5".parse::<Cores>().unwrap().get(), 0.5);
        assert_eq!("500m".parse::<Cores>().unwrap().get(), 0.5);
        for bad in ["-1", "inf", "NaN", "2cores", "0.5m"] {
            assert!(bad.parse::<Cores>().is_err(), "{bad}");
        }
    }
}
