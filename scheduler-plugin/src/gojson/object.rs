//! Walking a top-level JSON object by hand with Go's key rules, so that one huge field can be
//! read in a pass of its own.

use serde::de::IgnoredAny;

use super::fields::{GoStruct, field_index};
use super::scan::{excerpt, skip_ws, string_at};

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
