//! Scanning JSON text by hand, 16 bytes at a time where it can: string ends, whitespace, and
//! excerpts for error messages.

use std::borrow::Cow;

use super::fields::Text;

/// For the 16 bytes `b[i..i + 16]`: bit `k` of the first mask set when byte `k` is a `"`, a `\`
/// or a control character (not allowed raw in a JSON string); of the second when it is one Go
/// escapes or that may start a character it escapes (`<`, `>`, `&`, DEL, non-ASCII). `None`
/// when fewer than 16 bytes are left.
#[inline(always)]
pub(super) fn specials16(b: &[u8], i: usize) -> Option<(u32, u32)> {
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
/// and whether every byte before it is plain for Go's encoder (see [`NameList::plain_quoted`](super::NameList::plain_quoted)).
#[inline(always)]
pub(super) fn quote_or_backslash(b: &[u8], from: usize) -> Option<(usize, bool)> {
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

pub(super) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The JSON string whose opening quote is `raw[i]`: the index of its closing quote, whether it
/// has escapes, and whether it is plain for Go's encoder (see [`NameList::plain_quoted`](super::NameList::plain_quoted); false when escaped).
#[inline(always)]
pub(super) fn string_end(raw: &str, i: usize) -> Result<(usize, bool, bool), String> {
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
pub(super) fn not_a_string(raw: &str, i: usize) -> String {
    format!("expected a string, found {}", excerpt(raw, i))
}

#[cold]
pub(super) fn bad_string(control: bool) -> String {
    if control {
        "control character in a string".to_owned()
    } else {
        "unterminated string".to_owned()
    }
}

/// The escaped JSON string `raw[i..=end]` decoded.
pub(super) fn unescape(raw: &str, i: usize, end: usize) -> Result<String, String> {
    serde_json::from_str::<String>(raw.get(i..=end).unwrap_or_default()).map_err(|e| e.to_string())
}

/// The JSON string starting at `raw[i]` (a `"`), and the index just past it.
pub(super) fn string_at(raw: &str, i: usize) -> Result<(Text<'_>, usize), String> {
    let (end, escaped, _) = string_end(raw, i)?;
    // `i + 1` and `end` sit next to ASCII quotes, so both are char boundaries.
    let text = match raw.get(i + 1..end) {
        Some(s) if !escaped => Text(Cow::Borrowed(s)),
        _ => Text(Cow::Owned(unescape(raw, i, end)?)),
    };
    Ok((text, end + 1))
}

/// A few characters of `raw` from byte `at`, for an error message.
pub(super) fn excerpt(raw: &str, at: usize) -> String {
    let rest = raw.get(at..).unwrap_or("");
    if rest.is_empty() {
        "the end".to_owned()
    } else {
        format!("{:?}", rest.chars().take(12).collect::<String>())
    }
}
