//! Serde support for `Option<Duration>` fields written as `50ms` or `null`.

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
