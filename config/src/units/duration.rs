//! Serde and JSON-schema support for `std::time::Duration` fields written as `50ms`.

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
