//! Encoding JSON byte for byte as Go's `json.Marshal` does: compact, map keys sorted (the
//! callers use `BTreeMap`), and `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`, `\u003e`,
//! `\u0026`, `\u2028`, `\u2029` (Go's HTML-safe default).

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::value::RawValue;

/// A serde_json formatter with Go's string escaping. serde_json already escapes control
/// characters as Go does (`\n`, `\r`, `\t`, `\b`, `\f`, else `\u00XX` in lower-case hex) and
/// the default formatter methods write compact output.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Fast path: node names and most reasons have nothing to escape.
        if !fragment
            .bytes()
            .any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2))
        {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(esc)?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Raw JSON passed through (a full `v1.Node`), re-encoded as Go would re-encode it: whitespace
/// outside strings removed and `<`, `>`, `&`, U+2028, U+2029 inside strings escaped. For JSON
/// that Go produced (kube-scheduler's request) the result is what Go's decode-then-encode
/// yields, fields in the order Go wrote them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GoRaw<'a>(pub &'a RawValue);

fn needs_rewrite(raw: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for b in raw.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else {
                match b {
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    b'<' | b'>' | b'&' | 0xE2 => return true,
                    _ => {}
                }
            }
        } else {
            match b {
                b'"' => in_string = true,
                b' ' | b'\t' | b'\n' | b'\r' => return true,
                _ => {}
            }
        }
    }
    false
}

fn rewrite(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                _ => out.push(c),
            }
        } else {
            match c {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    out
}

impl Serialize for GoRaw<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = self.0.get();
        if !needs_rewrite(raw) {
            return self.0.serialize(s);
        }
        // The rewrite of valid JSON is valid JSON.
        match RawValue::from_string(rewrite(raw)) {
            Ok(v) => v.serialize(s),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

/// Bytes Go's encoder copies into a string unchanged: printable ASCII but `"`, `\`, `<`, `>`
/// and `&`. Anything else (control characters, non-ASCII, which may be U+2028 or U+2029) takes
/// the general path.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x7F {
        t[b] = !matches!(b as u8, b'"' | b'\\' | b'<' | b'>' | b'&');
        b += 1;
    }
    t
};

/// True when every byte is [`PLAIN`]; eight bytes at a time.
pub(crate) fn is_plain(bytes: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `w` equals `c` (exact for "any").
    let has = |w: u64, c: u8| {
        let x = w ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x & HI
    };
    let mut words = bytes.chunks_exact(8);
    for c in &mut words {
        let w = <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes);
        // Non-ASCII, or below 0x20 (exact for "any" once no high bit is set).
        let bad = (w & HI)
            | (w.wrapping_sub(LO * 0x20) & !w & HI)
            | has(w, b'"')
            | has(w, b'\\')
            | has(w, b'<')
            | has(w, b'>')
            | has(w, b'&')
            | has(w, 0x7F);
        if bad != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|&b| PLAIN[usize::from(b)])
}

/// Appends `s` as a JSON string, encoded as Go's `json.Marshal` would: node names and reasons
/// (plain ASCII) are copied between quotes; anything else goes through [`GoFormatter`].
pub(crate) fn push_string(out: &mut Vec<u8>, s: &str) {
    if is_plain(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, GoFormatter);
    // A `str` serialized into a Vec cannot fail (no I/O, no map keys).
    if let Err(e) = s.serialize(&mut ser) {
        tracing::error!("JSON encoding of a string failed: {e}");
    }
}

/// [`push_string`] for a string already known to need no escaping (`plain`: checked once, when
/// the node was first stored), else [`push_string`] itself.
pub(crate) fn push_name(out: &mut Vec<u8>, s: &str, plain: bool) {
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        push_string(out, s);
    }
}

/// Appends `bytes[..len]`. Where `bytes` has 16 bytes and `len` is at most 16 (a short node
/// name with its quotes), the copy is one 16-byte block instead of a call to `memcpy`.
#[inline(always)]
pub(crate) fn push_short(out: &mut Vec<u8>, bytes: &[u8], len: usize) {
    push_block::<16>(out, bytes, len);
}

/// Appends `bytes[..len]`, as one `N`-byte block copy where `bytes` has `N` bytes and `len` is at
/// most `N`, else through `extend_from_slice`.
#[inline(always)]
pub(crate) fn push_block<const N: usize>(out: &mut Vec<u8>, bytes: &[u8], len: usize) {
    match bytes.first_chunk::<N>() {
        Some(block) if len <= N => {
            out.reserve(N);
            let at = out.len();
            // SAFETY: `reserve(N)` leaves at least N bytes of spare capacity after `at`; all N
            // are written from `block` (N initialized bytes, not overlapping `out`), so the
            // `len` bytes (`len <= N`) that `set_len` takes in are initialized.
            unsafe {
                std::ptr::copy_nonoverlapping(block.as_ptr(), out.as_mut_ptr().add(at), N);
                out.set_len(at + len);
            }
        }
        _ => out.extend_from_slice(bytes.get(..len).unwrap_or(bytes)),
    }
}

/// Appends `value` encoded as Go's `json.Marshal` would.
pub(crate) fn push_value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, GoFormatter);
    // Serializing these plain structs into a Vec cannot fail: no maps with non-string keys, no
    // I/O errors.
    if let Err(e) = value.serialize(&mut ser) {
        tracing::error!("JSON encoding failed: {e}");
        out.extend_from_slice(b"null");
    }
}

/// `value` encoded as Go's `json.Marshal` would.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serializing these plain structs into a Vec cannot fail: no maps with non-string keys, no
    // I/O errors.
    if let Err(e) = value.serialize(&mut ser) {
        tracing::error!("JSON encoding failed: {e}");
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_pushes_copy_exactly() {
        let src = b"\"node-1\",\"node-22\",\"a-name-longer-than-16\"";
        for (at, len) in [(0, 8), (9, 9), (19, 23), (0, 0), (30, 5), (0, src.len())] {
            let mut out = b"x".to_vec();
            let bytes = &src[at..(at + len.max(16)).min(src.len())];
            push_short(&mut out, bytes, len);
            assert_eq!(&out[1..], &src[at..at + len]);
            assert_eq!(out.len(), 1 + len);
        }
    }

    #[test]
    fn escapes_like_go() {
        let s = "a<b>&c\u{2028}\u{2029}\"\\\n\t\u{1}\u{8}\u{c}é";
        // What Go 1.22+ `json.Marshal` produces for that string.
        let want = r#""a\u003cb\u003e\u0026c\u2028\u2029\"\\\n\t\u0001\b\fé""#;
        assert_eq!(String::from_utf8(to_vec(s)).unwrap(), want);
        assert_eq!(to_vec(&vec![1, 2]), b"[1,2]");
    }

    #[test]
    fn plain_check_agrees_with_the_table() {
        for b in 0..=255u8 {
            for pos in 0..16 {
                let mut s = vec![b'a'; 16];
                s[pos] = b;
                assert_eq!(is_plain(&s), PLAIN[usize::from(b)], "byte {b:#x} at {pos}");
            }
        }
        assert!(is_plain(b""));
    }

    #[test]
    fn push_string_matches_the_general_encoder() {
        for s in [
            "",
            "node-00042",
            "ip-10-0-1-2.ec2.internal",
            "a<b",
            "a>b&c",
            "q\"uote\\",
            "tab\there",
            "\u{1}",
            "del\u{7f}",
            "é",
            "x\u{2028}y\u{2029}",
            "colo: the node's colo-agent report is stale",
        ] {
            let mut out = b"[".to_vec();
            push_string(&mut out, s);
            assert_eq!(&out[1..], to_vec(s).as_slice(), "{s:?}");
        }
    }

    #[test]
    fn raw_json_is_re_encoded_like_go() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let compact = raw(r#"{"a":"x y","b":[1,2]}"#);
        assert_eq!(to_vec(&GoRaw(&compact)), br#"{"a":"x y","b":[1,2]}"#);
        let loose = raw("{ \"a\" : \"<x> & \\\"y\\\" \u{2028}\",\n \"b\": [1, 2] }");
        assert_eq!(
            String::from_utf8(to_vec(&GoRaw(&loose))).unwrap(),
            r#"{"a":"\u003cx\u003e \u0026 \"y\" \u2028","b":[1,2]}"#
        );
    }
}
