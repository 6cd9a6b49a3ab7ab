//! Decoding JSON the way Go's `encoding/json` does: object keys match struct fields
//! case-insensitively, unknown keys are ignored, `null` leaves a field at its zero value, and a
//! later duplicate key overwrites an earlier one.

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
                $crate::k8s::decode::go_struct(d)
            }
        }
    };
    ($t:ident<'de>) => {
        impl<'de> serde::Deserialize<'de> for $t<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::k8s::decode::go_struct(d)
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
fn field_index(fields: &[&str], key: &str) -> Option<usize> {
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

/// Index of the first `"`, `\` or control character (not allowed raw in a JSON string) at or
/// after `from`, eight bytes at a time.
fn quote_or_backslash(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has = |w: u64, c: u8| {
        let x = w ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x & HI
    };
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        // The lowest flagged byte is exact (false flags only sit above a true one).
        // Below 0x20 is exact on ASCII bytes (a set high bit is never a control character).
        let m = has(w, b'"') | has(w, b'\\') | (w.wrapping_sub(LO * 0x20) & !w & HI);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A JSON array of strings, cut into names without a serde call per element: a name without
/// escapes is borrowed from the request; one with escapes is decoded by serde_json.
///
/// # Errors
/// When `raw` is not an array of strings (the message says what was found instead).
pub(crate) fn string_array(raw: &str) -> Result<Vec<Text<'_>>, String> {
    let (names, end) = string_array_at(raw, 0)?;
    let end = skip_ws(raw.as_bytes(), end);
    if end < raw.len() {
        return Err(format!("trailing characters: {}", excerpt(raw, end)));
    }
    Ok(names)
}

/// The JSON string starting at `raw[i]` (a `"`), and the index just past it.
fn string_at(raw: &str, i: usize) -> Result<(Text<'_>, usize), String> {
    let b = raw.as_bytes();
    if b.get(i) != Some(&b'"') {
        return Err(format!("expected a string, found {}", excerpt(raw, i)));
    }
    let start = i + 1;
    let mut end = start;
    let mut escaped = false;
    loop {
        let Some(at) = quote_or_backslash(b, end) else {
            return Err("unterminated string".to_owned());
        };
        match b[at] {
            b'"' => {
                end = at;
                break;
            }
            b'\\' => {
                escaped = true;
                end = at + 2;
            }
            _ => return Err("control character in a string".to_owned()),
        }
    }
    // `start` and `end` sit next to ASCII quotes, so both are char boundaries.
    let text = match raw.get(start..end) {
        Some(s) if !escaped => Text(Cow::Borrowed(s)),
        _ => serde_json::from_str::<String>(raw.get(i..=end).unwrap_or_default())
            .map(|s| Text(Cow::Owned(s)))
            .map_err(|e| e.to_string())?,
    };
    Ok((text, end + 1))
}

/// The array of strings starting at `raw[i]` (after whitespace), and the index just past it.
pub(crate) fn string_array_at(raw: &str, i: usize) -> Result<(Vec<Text<'_>>, usize), String> {
    let b = raw.as_bytes();
    let mut i = skip_ws(b, i);
    if b.get(i) != Some(&b'[') {
        return Err(format!(
            "expected an array of strings, found {}",
            excerpt(raw, i)
        ));
    }
    // Each name takes at least 3 bytes (`"x",`); most take more than 8.
    let mut out = Vec::with_capacity(raw.len().saturating_sub(i) / 8);
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Ok((out, i + 1));
    }
    loop {
        let (text, end) = string_at(raw, i)?;
        out.push(text);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok((out, i + 1)),
            _ => {
                return Err(format!(
                    "expected , or ] in the array, found {}",
                    excerpt(raw, i)
                ));
            }
        }
    }
}

/// The value at `body[at]` decoded by serde_json, and the index just past it.
pub(crate) fn value_at<'de, T: serde::Deserialize<'de>>(
    body: &'de str,
    at: usize,
) -> Result<(T, usize), String> {
    let mut values =
        serde_json::Deserializer::from_str(body.get(at..).unwrap_or_default()).into_iter::<T>();
    match values.next() {
        Some(Ok(v)) => Ok((v, at + values.byte_offset())),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("expected a value, found the end".to_owned()),
    }
}

/// Decodes a top-level JSON object with Go's rules for keys ([`GoStruct`]: any letter case,
/// unknown keys ignored, a later duplicate wins), walking the keys by hand: `value(out, field,
/// body, at)` decodes the value of field `field` starting at `body[at]` and returns the index
/// just past it. Lets a caller read one huge field in one pass of its own (see
/// [`string_array_at`]) and the others with [`value_at`].
///
/// # Errors
/// When `body` is not a JSON object, or `value` fails.
pub(crate) fn go_object<'de, T: GoStruct<'de>>(
    body: &'de str,
    mut value: impl FnMut(&mut T, usize, &'de str, usize) -> Result<usize, String>,
) -> Result<T, String> {
    let b = body.as_bytes();
    let mut out = T::default();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(format!(
            "expected a JSON object ({}), found {}",
            T::NAME,
            excerpt(body, i)
        ));
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let (key, after) = string_at(body, i)?;
            i = skip_ws(b, after);
            if b.get(i) != Some(&b':') {
                return Err(format!(
                    "expected : after a key, found {}",
                    excerpt(body, i)
                ));
            }
            i = skip_ws(b, i + 1);
            i = match field_index(T::FIELDS, &key) {
                Some(f) => value(&mut out, f, body, i)?,
                None => value_at::<IgnoredAny>(body, i)?.1,
            };
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => {
                    return Err(format!(
                        "expected , or }} in the object, found {}",
                        excerpt(body, i)
                    ));
                }
            }
        }
    }
    let end = skip_ws(b, i);
    if end < body.len() {
        return Err(format!("trailing characters: {}", excerpt(body, end)));
    }
    Ok(out)
}

/// A few characters of `raw` from byte `at`, for an error message.
fn excerpt(raw: &str, at: usize) -> String {
    let rest = raw.get(at..).unwrap_or("");
    if rest.is_empty() {
        "the end".to_owned()
    } else {
        format!("{:?}", rest.chars().take(12).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
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
    fn string_arrays_decode_as_serde_does() {
        let long = format!("{}\\\"{}", "a".repeat(20), "b".repeat(20));
        for raw in [
            "[]",
            " [ ] ",
            r#"["a"]"#,
            r#"["node-00001","node-00002","ip-10-0-0-1.ec2.internal"]"#,
            "[ \"a\" ,\n\t\"b\"\r\n]",
            r#"["",""]"#,
            r#"["q\"uote","back\\slash","\u0041\u00e9","tab\t","x\/y"]"#,
            r#"["é ü 日本", "\ud83d\ude00"]"#,
            &format!(r#"["{long}","{long}x"]"#),
            r#"["12345678","1234567\"","12345678\\"]"#,
        ] {
            let want: Vec<Text<'_>> = serde_json::from_str(raw).unwrap();
            let got = string_array(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got, want, "{raw}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    matches!(g.0, Cow::Borrowed(_)),
                    matches!(w.0, Cow::Borrowed(_)),
                    "{raw}"
                );
            }
        }
        for raw in [
            "[1]",
            r#"["a",null]"#,
            r#"{"a":1}"#,
            r#"["a" "b"]"#,
            "[",
            r#"["a"#,
        ] {
            assert!(string_array(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn node_names_of_any_shape_decode_in_extender_args() {
        use super::super::wire::ExtenderArgs;
        let names = |body: &str| {
            serde_json::from_str::<ExtenderArgs<'_>>(body).map(|a| {
                a.node_names
                    .map(|v| v.iter().map(|t| t.to_string()).collect::<Vec<_>>())
            })
        };
        assert_eq!(
            names(r#"{"nodenames":["a","b\u0026"]}"#).unwrap(),
            Some(vec!["a".to_owned(), "b&".to_owned()])
        );
        assert_eq!(names(r#"{"NodeNames":null}"#).unwrap(), None);
        assert_eq!(names("{}").unwrap(), None);
        let err = names(r#"{"NodeNames":["a",2]}"#).unwrap_err().to_string();
        assert!(err.contains("expected a string"), "{err}");
        assert!(names(r#"{"NodeNames":"a"}"#).is_err());
    }

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
