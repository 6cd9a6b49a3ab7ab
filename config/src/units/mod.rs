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

pub mod duration;
mod grammar;
pub mod option_duration;
mod quantity;

use grammar::*;
pub use grammar::{format_duration, parse_duration};
pub use quantity::{ByteRate, ByteSize, Cores, DurationValue, Percent, StallRate};

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

#[cfg(test)]
mod tests;
