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

/// Node names as a request lists them, kept compactly: each name is a span of the request body
/// (when it has no escapes, almost always) or of one owned buffer (escaped names, decoded), so a
/// list of thousands costs 8 bytes a name and no allocation per name.
#[derive(Clone, Debug, Default)]
pub struct NameList<'a> {
    /// The text spans of borrowed names point into.
    src: &'a str,
    /// Decoded escaped names, one after another.
    owned: String,
    /// Per name: start (bits 0..32) and length (bits 32..62) in `src`, or in `owned` when
    /// [`OWNED`] is set; [`PLAIN`] when the name encodes in JSON as itself.
    spans: Vec<u64>,
}

/// Bit of a span that says the name lives in [`NameList::owned`].
const OWNED: u64 = 1 << 63;
/// Bit of a span that says the name is borrowed and encodes in JSON (Go's way) as the request
/// wrote it: no escapes, no `<`, `>`, `&`, DEL or non-ASCII byte.
const PLAIN: u64 = 1 << 62;
/// Longest name a span holds (1 GiB; Kubernetes names are at most 253 bytes).
const MAX_NAME: u64 = (1 << 30) - 1;

/// Start and length of a span.
#[inline]
fn span_parts(s: u64) -> (usize, usize) {
    // Both fit 32 bits, so they fit a usize on the 64-bit targets colo runs on.
    #[allow(clippy::cast_possible_truncation)]
    ((s & 0xffff_ffff) as usize, ((s >> 32) & MAX_NAME) as usize)
}

impl<'a> NameList<'a> {
    /// An empty list whose borrowed names will come from `src`.
    fn with_source(src: &'a str, capacity: usize) -> Self {
        Self {
            src,
            owned: String::new(),
            spans: Vec::with_capacity(capacity),
        }
    }

    /// A list of names held by the list itself.
    pub fn from_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut out = Self::default();
        for n in names {
            out.push_owned(n.as_ref());
        }
        out
    }

    #[inline(always)]
    fn push_borrowed(&mut self, start: usize, end: usize, plain: bool) -> Result<(), String> {
        match (u32::try_from(start), u64::try_from(end - start)) {
            (Ok(s), Ok(l)) if l <= MAX_NAME => {
                let flag = if plain { PLAIN } else { 0 };
                self.spans.push(u64::from(s) | (l << 32) | flag);
                Ok(())
            }
            _ => Err("request too large: node names beyond 4 GiB, or one over 1 GiB".to_owned()),
        }
    }

    fn push_owned(&mut self, name: &str) {
        let start = self.owned.len() as u64 & 0xffff_ffff;
        let len = name.len() as u64 & MAX_NAME;
        // Kubernetes names are at most 253 bytes: nothing is cut here in practice, and a cut
        // name only fails to match a node.
        self.owned.push_str(name);
        self.spans.push(OWNED | start | (len << 32));
    }

    /// Number of names.
    #[must_use]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn text(&self, s: u64) -> &str {
        if s & OWNED == 0 {
            self.src
        } else {
            &self.owned
        }
    }

    /// Name `i` (panics past the end, as slice indexing does).
    #[must_use]
    pub fn get(&self, i: usize) -> &str {
        let s = self.spans[i];
        let (start, len) = span_parts(s);
        // Spans are cut next to ASCII quotes of `src` or at pushed names' ends: char boundaries.
        self.text(s).get(start..start + len).unwrap_or_default()
    }

    /// Name `i` as bytes (no char-boundary checks: for hashing and comparing).
    #[inline]
    #[must_use]
    pub fn bytes(&self, i: usize) -> &[u8] {
        let s = self.spans[i];
        let (start, len) = span_parts(s);
        self.text(s)
            .as_bytes()
            .get(start..start + len)
            .unwrap_or_default()
    }

    /// Name `i` with its quotes as the request wrote it, when that is exactly how Go's encoder
    /// writes it (see [`PLAIN`]); `None` otherwise. As `(bytes, len)`: the quoted name is
    /// `bytes[..len]`, and `bytes` runs on over what follows in the request, up to 16 bytes in
    /// all where the request has them, so a short name can be copied as one 16-byte block.
    #[inline(always)]
    #[must_use]
    pub fn plain_quoted(&self, i: usize) -> Option<(&'a [u8], usize)> {
        let s = self.spans[i];
        if s & PLAIN == 0 {
            return None;
        }
        let (start, len) = span_parts(s);
        // Plain spans are borrowed and sit between two quotes of `src`.
        let from = start.wrapping_sub(1);
        let quoted = len + 2;
        let src = self.src.as_bytes();
        let end = (from + quoted.max(16)).min(src.len());
        src.get(from..end).map(|b| (b, quoted))
    }

    /// Total bytes of all names.
    #[must_use]
    pub fn text_len(&self) -> usize {
        self.spans.iter().map(|&s| span_parts(s).1).sum()
    }

    /// The names in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl PartialEq for NameList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// For the 16 bytes `b[i..i + 16]`: bit `k` of the first mask set when byte `k` is a `"`, a `\`
/// or a control character (not allowed raw in a JSON string); of the second when it is one Go
/// escapes or that may start a character it escapes (`<`, `>`, `&`, DEL, non-ASCII). `None`
/// when fewer than 16 bytes are left.
#[inline(always)]
fn specials16(b: &[u8], i: usize) -> Option<(u32, u32)> {
    let chunk = b.get(i..i + 16)?;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: `chunk` is 16 readable bytes and `_mm_loadu_si128` takes any alignment; SSE2
        // is part of the x86_64 baseline. The rest are register operations.
        let (special, odd) = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // Unsigned `v <= 0x1f`: max(v, 0x1f) == 0x1f.
            let low = _mm_set1_epi8(0x1f);
            let ctrl = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
            let special = _mm_or_si128(_mm_or_si128(eq(b'"'), eq(b'\\')), ctrl);
            let odd = _mm_or_si128(
                _mm_or_si128(eq(b'<'), eq(b'>')),
                _mm_or_si128(eq(b'&'), eq(0x7f)),
            );
            // The sign bit of each byte marks the non-ASCII ones.
            (
                _mm_movemask_epi8(special),
                _mm_movemask_epi8(_mm_or_si128(odd, v)),
            )
        };
        #[allow(clippy::cast_sign_loss)]
        Some((special as u32, odd as u32))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (mut special, mut odd) = (0u32, 0u32);
        for (k, &c) in chunk.iter().enumerate() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                special |= 1 << k;
            }
            if matches!(c, b'<' | b'>' | b'&') || c >= 0x7f {
                odd |= 1 << k;
            }
        }
        Some((special, odd))
    }
}

/// Index of the first `"`, `\` or control character at or after `from`, 16 bytes at a time,
/// and whether every byte before it is plain for Go's encoder (see [`PLAIN`]).
#[inline(always)]
fn quote_or_backslash(b: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut i = from;
    let mut plain = true;
    while let Some((special, odd)) = specials16(b, i) {
        if special != 0 {
            let k = special.trailing_zeros();
            let before = (1u32 << k) - 1;
            return Some((i + k as usize, plain && odd & before == 0));
        }
        plain &= odd == 0;
        i += 16;
    }
    let rest = b.get(i..)?;
    let k = rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    let tail_plain = rest[..k]
        .iter()
        .all(|&c| !matches!(c, b'<' | b'>' | b'&') && c < 0x7f);
    Some((i + k, plain && tail_plain))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A JSON array of strings, cut into names without a serde call per element: a name without
/// escapes is a span of `raw`; one with escapes is decoded by serde_json.
///
/// # Errors
/// When `raw` is not an array of strings (the message says what was found instead).
pub(crate) fn string_array(raw: &str) -> Result<NameList<'_>, String> {
    let (names, end) = string_array_at(raw, 0)?;
    let end = skip_ws(raw.as_bytes(), end);
    if end < raw.len() {
        return Err(format!("trailing characters: {}", excerpt(raw, end)));
    }
    Ok(names)
}

/// The JSON string whose opening quote is `raw[i]`: the index of its closing quote, whether it
/// has escapes, and whether it is plain for Go's encoder (see [`PLAIN`]; false when escaped).
#[inline(always)]
fn string_end(raw: &str, i: usize) -> Result<(usize, bool, bool), String> {
    let b = raw.as_bytes();
    if b.get(i) != Some(&b'"') {
        return Err(not_a_string(raw, i));
    }
    let mut at = i + 1;
    let mut escaped = false;
    loop {
        let Some((k, plain)) = quote_or_backslash(b, at) else {
            return Err(bad_string(false));
        };
        match b[k] {
            b'"' => return Ok((k, escaped, plain && !escaped)),
            b'\\' => {
                escaped = true;
                at = k + 2;
            }
            _ => return Err(bad_string(true)),
        }
    }
}

#[cold]
fn not_a_string(raw: &str, i: usize) -> String {
    format!("expected a string, found {}", excerpt(raw, i))
}

#[cold]
fn bad_string(control: bool) -> String {
    if control {
        "control character in a string".to_owned()
    } else {
        "unterminated string".to_owned()
    }
}

/// The escaped JSON string `raw[i..=end]` decoded.
fn unescape(raw: &str, i: usize, end: usize) -> Result<String, String> {
    serde_json::from_str::<String>(raw.get(i..=end).unwrap_or_default()).map_err(|e| e.to_string())
}

/// The JSON string starting at `raw[i]` (a `"`), and the index just past it.
fn string_at(raw: &str, i: usize) -> Result<(Text<'_>, usize), String> {
    let (end, escaped, _) = string_end(raw, i)?;
    // `i + 1` and `end` sit next to ASCII quotes, so both are char boundaries.
    let text = match raw.get(i + 1..end) {
        Some(s) if !escaped => Text(Cow::Borrowed(s)),
        _ => Text(Cow::Owned(unescape(raw, i, end)?)),
    };
    Ok((text, end + 1))
}

/// The array of strings starting at `raw[i]` (after whitespace), and the index just past it.
pub(crate) fn string_array_at(raw: &str, i: usize) -> Result<(NameList<'_>, usize), String> {
    let b = raw.as_bytes();
    let mut i = skip_ws(b, i);
    if b.get(i) != Some(&b'[') {
        return Err(format!(
            "expected an array of strings, found {}",
            excerpt(raw, i)
        ));
    }
    // Each name takes at least 3 bytes (`"x",`); most take more than 12.
    let mut out = NameList::with_source(raw, raw.len().saturating_sub(i) / 12);
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Ok((out, i + 1));
    }
    // Compact arrays (as Go writes them) in bulk; the loop below takes over wherever that stops.
    match compact_names(b, i, &mut out)? {
        Compact::Done(end) => return Ok((out, end)),
        Compact::Resume(at) => i = at,
    }
    loop {
        let (end, escaped, plain) = string_end(raw, i)?;
        if escaped {
            out.push_owned(&unescape(raw, i, end)?);
        } else {
            out.push_borrowed(i + 1, end, plain)?;
        }
        i = end + 1;
        // Compact JSON (as Go writes it) has the comma right there.
        match b.get(i) {
            Some(b',') if b.get(i + 1) == Some(&b'"') => {
                i += 1;
                continue;
            }
            _ => {}
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok((out, i + 1)),
            _ => return Err(not_a_separator(raw, i)),
        }
    }
}

/// Where [`compact_names`] stopped.
enum Compact {
    /// The array ended; the index just past its `]`.
    Done(usize),
    /// The opening quote of the first name it did not take.
    Resume(usize),
}

/// Reads names from the opening quote at `b[open]` while the array is compact JSON (`"a","b"`,
/// then `]`) and the names have no escapes: 16 bytes at a time, finding every quote in a block at
/// once, so one name's end does not wait on the previous name's scan. Stops, without taking the
/// name it is on, at anything else (whitespace, escapes, control characters, the last 16 bytes
/// of the body): the caller reads the rest the general way, which also reports errors.
#[inline(always)]
fn compact_names(b: &[u8], mut open: usize, out: &mut NameList<'_>) -> Result<Compact, String> {
    if b.get(open) != Some(&b'"') {
        return Ok(Compact::Resume(open));
    }
    let mut pos = open + 1;
    let Some((mut special, mut odd)) = specials16(b, pos) else {
        return Ok(Compact::Resume(open));
    };
    loop {
        // This name's closing quote (or the escape or control character that stops us).
        let mut plain = true;
        while special == 0 {
            plain &= odd == 0;
            pos += 16;
            match specials16(b, pos) {
                Some(m) => (special, odd) = m,
                None => return Ok(Compact::Resume(open)),
            }
        }
        let k = special.trailing_zeros();
        let close = pos + k as usize;
        if b[close] != b'"' {
            return Ok(Compact::Resume(open));
        }
        plain &= odd & ((1u32 << k) - 1) == 0;
        match (b.get(close + 1), b.get(close + 2)) {
            (Some(b','), Some(b'"')) => {}
            (Some(b']'), _) => {
                out.push_borrowed(open + 1, close, plain)?;
                return Ok(Compact::Done(close + 2));
            }
            _ => return Ok(Compact::Resume(open)),
        }
        out.push_borrowed(open + 1, close, plain)?;
        open = close + 2;
        // Keep this block's masks past the new opening quote, or load the block after it.
        let r = open - pos;
        if r < 15 {
            let keep = !((2u32 << r) - 1);
            special &= keep;
            odd &= keep;
        } else {
            pos = open + 1;
            match specials16(b, pos) {
                Some(m) => (special, odd) = m,
                None => return Ok(Compact::Resume(open)),
            }
        }
    }
}

#[cold]
fn not_a_separator(raw: &str, i: usize) -> String {
    format!("expected , or ] in the array, found {}", excerpt(raw, i))
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
            r#"["a<b","c&d","x>y","0123456789abcdef<","0123456789abcdefghijklmnopqrstu&v"]"#,
            "[\"del\u{7f}\",\"0123456789abcdef0123456789\u{7f}\",\"plain-but-long-0123456789abcdef0123456789\"]",
            r#"["é","0123456789abcdef0123é","0123456789abcdef","0123456789abcde","012345678901234567890123456789012"]"#,
            r#"["\u0041","a\u003cb"]"#,
        ] {
            let want: Vec<Text<'_>> = serde_json::from_str(raw).unwrap();
            let got = string_array(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                want.iter().map(|t| &**t).collect::<Vec<_>>(),
                "{raw}"
            );
            for (i, w) in want.iter().enumerate() {
                let plain =
                    matches!(w.0, Cow::Borrowed(_)) && super::super::gojson::is_plain(w.as_bytes());
                assert_eq!(got.plain_quoted(i).is_some(), plain, "{raw} {i}");
                if let Some((q, len)) = got.plain_quoted(i) {
                    assert_eq!(&q[..len], format!("\"{}\"", &**w).as_bytes(), "{raw}");
                    assert!(q.len() >= len.min(raw.len() - 1));
                }
                assert_eq!(got.bytes(i), w.as_bytes());
            }
            assert_eq!(got, NameList::from_names(want.iter().map(|t| &**t)));
        }
        for raw in [
            "[1]",
            r#"["a",null]"#,
            r#"["a",]"#,
            r#"["a",,"b"]"#,
            r#"[,"a"]"#,
            r#"["a"]]"#,
            r#"["a\"]"#,
            r#"["a\u00"]"#,
            r#"["\x"]"#,
            "[\"a\nb\"]",
            "[\"\u{1f}\"]",
            r#"["a""b"]"#,
            "[\"aaaaaaaaaaaaaaaaaaaaaaaaaaa",
            r#"{"a":1}"#,
            r#"["a" "b"]"#,
            "[",
            r#"["a"#,
        ] {
            assert!(string_array(raw).is_err(), "{raw}");
        }
    }

    /// Random arrays of names (plain, with characters Go escapes, with JSON escapes; compact
    /// or spaced), long enough for the bulk path, decoded as serde_json decodes them; and broken
    /// ones refused as serde_json refuses them.
    #[test]
    fn long_arrays_decode_as_serde_does() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let pieces = [
            "node-",
            "0",
            "17",
            "abcdefghijklmnop",
            "x",
            "<",
            ">",
            "&",
            "é",
            "日本",
            r#"\""#,
            r"\\",
            r"\n",
            r"\u0041",
            r"\u00e9",
            r"\/",
            "-",
            ".",
            r"\u2028",
            r"\u007f",
        ];
        for case in 0..400 {
            let count = rand(60) as usize;
            let mut raw = String::from("[");
            let spaced = case % 7 == 3;
            for k in 0..count {
                if k > 0 {
                    raw.push_str(if spaced && rand(3) == 0 { " , " } else { "," });
                }
                raw.push('"');
                for _ in 0..rand(6) {
                    let p = if case % 2 == 0 {
                        rand(6)
                    } else {
                        rand(pieces.len() as u64)
                    };
                    raw.push_str(pieces[p as usize]);
                }
                raw.push('"');
            }
            raw.push(']');
            let want: Vec<String> = serde_json::from_str(&raw).unwrap();
            let got = string_array(&raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{raw}");
            for (i, w) in want.iter().enumerate() {
                if let Some((q, len)) = got.plain_quoted(i) {
                    assert_eq!(&q[..len], format!("\"{w}\"").as_bytes(), "{raw}");
                }
                // Plain in the request means plain for Go; the reverse only without escapes.
                assert!(
                    got.plain_quoted(i).is_none() || super::super::gojson::is_plain(w.as_bytes())
                );
            }
            // Broken copies: cut short, a byte changed, a raw control character.
            for _ in 0..8 {
                let mut bad = raw.clone().into_bytes();
                match rand(3) {
                    0 => bad.truncate(rand(bad.len() as u64) as usize),
                    1 => {
                        let at = rand(bad.len() as u64) as usize;
                        bad[at] = [b'"', b'\\', b',', b']', b' ', 0x01, b'a'][rand(7) as usize];
                    }
                    _ => {
                        let at = rand(bad.len() as u64) as usize;
                        bad.insert(at, [0x01, b'\n', b'"', b','][rand(4) as usize]);
                    }
                }
                let Ok(bad) = String::from_utf8(bad) else {
                    continue;
                };
                let want = serde_json::from_str::<Vec<String>>(&bad);
                let got = string_array(&bad);
                assert_eq!(got.is_ok(), want.is_ok(), "{bad:?}: {got:?} {want:?}");
                if let (Ok(g), Ok(w)) = (got, want) {
                    assert_eq!(g.iter().collect::<Vec<_>>(), w, "{bad:?}");
                }
            }
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
