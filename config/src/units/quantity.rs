//! The unit types: a duration where `with` cannot reach, percentages, sizes, byte rates, stall
//! rates and CPU amounts, each parsed from and written as its human string.

use super::*;

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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

    pub(super) fn parse(s: &str) -> Option<Self> {
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
