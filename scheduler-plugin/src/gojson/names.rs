//! A JSON array of node names, cut into spans of the request body without a serde call per
//! name.

use super::scan::{excerpt, skip_ws, specials16, string_end, unescape};

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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::gojson::{Text, is_plain};

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
                let plain = matches!(w.0, Cow::Borrowed(_)) && is_plain(w.as_bytes());
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
                assert!(got.plain_quoted(i).is_none() || is_plain(w.as_bytes()));
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
}
