//! Decoding JSON objects into structs the way Go's `encoding/json` does: object keys match struct
//! fields case-insensitively, unknown keys are ignored, `null` leaves a field at its zero value,
//! and a later duplicate key overwrites an earlier one.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A struct decoded with Go's rules. `FIELDS` holds the names as Go's encoder spells them (the
/// json tag, or the Go field name when there is none).
pub(crate) trait GoStruct<'de>: Default {
    /// Type name for error messages.
    const NAME: &'static str;
    /// Field names; [`GoStruct::set`] receives an index into this.
    const FIELDS: &'static [&'static str];
    /// Decodes the value of field `index` from `map`.
    fn set<A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error>;
}

/// Deserializes a [`GoStruct`] from a JSON object.
pub(crate) fn go_struct<'de, T: GoStruct<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    struct V<T>(PhantomData<T>);
    impl<'de, T: GoStruct<'de>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a JSON object ({})", T::NAME)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let mut out = T::default();
            while let Some(field) = map.next_key_seed(FieldSeed(T::FIELDS))? {
                match field {
                    Some(i) => out.set(i, &mut map)?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(V(PhantomData))
}

/// A struct field's decoding: an `Option` is `None` on `null` (a nil pointer in Go); a plain
/// string or integer keeps its zero value on `null`, as Go leaves it.
pub(crate) trait GoField<'de>: Sized {
    /// Decodes the next map value.
    fn decode<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error>;
}

impl<'de, T: serde::Deserialize<'de>> GoField<'de> for Option<T> {
    fn decode<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value()
    }
}

impl<'de> GoField<'de> for String {
    fn decode<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value::<Option<String>>()
            .map(Option::unwrap_or_default)
    }
}

impl<'de> GoField<'de> for i64 {
    fn decode<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value::<Option<i64>>()
            .map(Option::unwrap_or_default)
    }
}

/// Implements `Deserialize` for [`GoStruct`] types.
macro_rules! go_deserialize {
    ($t:ident) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::gojson::go_struct(d)
            }
        }
    };
    ($t:ident<'de>) => {
        impl<'de> serde::Deserialize<'de> for $t<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::gojson::go_struct(d)
            }
        }
    };
}
pub(crate) use go_deserialize;

/// True when JSON key `key` selects the field Go spells `field`: Go folds case (Unicode simple
/// folding), which for ASCII field names means ASCII case-insensitivity plus the two non-ASCII
/// letters that fold onto ASCII ones, `ſ` (U+017F) onto `s` and the Kelvin sign (U+212A) onto `k`.
#[must_use]
pub(crate) fn go_fold_eq(key: &str, field: &str) -> bool {
    let mut f = field.bytes();
    for c in key.chars() {
        let Some(b) = f.next() else {
            return false;
        };
        let k = match c {
            '\u{017F}' => b's',
            '\u{212A}' => b'k',
            // `c` is ASCII here, so it fits a byte.
            #[allow(clippy::cast_possible_truncation)]
            c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => return false,
        };
        if k != b.to_ascii_lowercase() {
            return false;
        }
    }
    f.next().is_none()
}

/// The field `key` selects: Go prefers an exact match, then a folded one.
pub(super) fn field_index(fields: &[&str], key: &str) -> Option<usize> {
    fields
        .iter()
        .position(|f| *f == key)
        .or_else(|| fields.iter().position(|f| go_fold_eq(key, f)))
}

struct FieldSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(field_index(self.0, key))
    }
    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<Self::Value, E> {
        match std::str::from_utf8(key) {
            Ok(s) => self.visit_str(s),
            Err(_) => Ok(None),
        }
    }
}

/// A string borrowed from the request body when it has no escapes, owned otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Probe<'a> {
        node_names: Option<Vec<Text<'a>>>,
        count: Option<i64>,
    }

    impl<'de> GoStruct<'de> for Probe<'de> {
        const NAME: &'static str = "Probe";
        const FIELDS: &'static [&'static str] = &["NodeNames", "Count"];
        fn set<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
            match i {
                0 => self.node_names = map.next_value()?,
                _ => self.count = map.next_value()?,
            }
            Ok(())
        }
    }
    go_deserialize!(Probe<'de>);

    #[test]
    fn keys_match_like_go() {
        assert!(go_fold_eq("nodenames", "NodeNames"));
        assert!(go_fold_eq("NODENAMES", "NodeNames"));
        assert!(go_fold_eq("nOdEnAmEs", "NodeNames"));
        assert!(go_fold_eq("NodeName\u{017F}", "NodeNames"));
        assert!(go_fold_eq("\u{212A}ind", "kind"));
        assert!(!go_fold_eq("NodeName", "NodeNames"));
        assert!(!go_fold_eq("NodeNamesX", "NodeNames"));
        assert!(!go_fold_eq("Node_Names", "NodeNames"));
        assert!(!go_fold_eq("NödeNames", "NodeNames"));
    }

    #[test]
    fn decodes_any_case_ignores_unknown_and_null() {
        let p: Probe<'_> =
            serde_json::from_str(r#"{"nodenames":["a","b\"c"],"other":{"x":[1]},"COUNT":3}"#)
                .unwrap();
        let names: Vec<&str> = p
            .node_names
            .as_deref()
            .unwrap()
            .iter()
            .map(|t| &**t)
            .collect();
        assert_eq!(names, ["a", "b\"c"]);
        assert!(matches!(
            p.node_names.as_ref().unwrap()[0].0,
            Cow::Borrowed(_)
        ));
        assert_eq!(p.count, Some(3));
        let p: Probe<'_> =
            serde_json::from_str(r#"{"NodeNames":null,"count":1,"Count":2}"#).unwrap();
        assert_eq!(
            p,
            Probe {
                node_names: None,
                count: Some(2)
            }
        );
        let p: Probe<'_> = serde_json::from_str(r#"{"\u004eodeNames":["x"]}"#).unwrap();
        assert_eq!(p.node_names.unwrap().len(), 1);
        assert!(serde_json::from_str::<Probe<'_>>("[1]").is_err());
    }
}
