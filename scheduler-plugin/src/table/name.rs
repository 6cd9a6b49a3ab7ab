//! Node names as the table keys them: a fast seeded hash (the extender looks up thousands of
//! names per request), the names a lookup takes, and short names stored inline.

use std::hash::{BuildHasher, Hasher};

/// A fast seeded hash for node names (a multiply-rotate over 8-byte words, as rustc's FxHash,
/// with a final avalanche): the extender looks up thousands of names per request, where SipHash's
/// cost shows. The seed is random per table, so crafted names cannot aim at one bucket offline.
#[derive(Debug, Clone, Copy)]
pub struct NameHash {
    pub(super) seed: u64,
}

impl NameHash {
    /// The hash the placement index files `name` under: a folded 64×64→128-bit multiply of the
    /// name's bytes (read as at most two overlapping words for names up to 16 bytes, most of
    /// them; word by word beyond) with the table's random seed, inlined at the caller.
    #[inline(always)]
    #[must_use]
    pub fn of(self, name: &[u8]) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let n = name.len();
        let word = |i: usize| {
            name.get(i..i + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let half = |i: usize| {
            name.get(i..i + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
        };
        let len = n as u64;
        // Every byte lands in (lo, hi), so with the length mixed in, different names give
        // different inputs to the last fold.
        let (mut acc, lo, hi) = if n > 16 {
            let mut acc = self.seed ^ len;
            let mut i = 0;
            while i + 16 < n {
                acc = fold(acc ^ word(i), K ^ word(i + 8));
                i += 16;
            }
            (acc, word(n - 16), word(n - 8))
        } else if n >= 8 {
            (self.seed ^ len, word(0), word(n - 8))
        } else if n >= 4 {
            (self.seed ^ len, half(0), half(n - 4))
        } else if n > 0 {
            let b = |i: usize| u64::from(name[i]);
            (
                self.seed ^ len,
                b(0) | (b(n / 2) << 8) | (b(n - 1) << 16),
                0,
            )
        } else {
            (self.seed, 0, 0)
        };
        acc = fold(acc ^ lo, K ^ hi ^ self.seed.rotate_left(32));
        fold(acc, K ^ len)
    }
}

/// The folded multiply: both halves of the 128-bit product of `a` and `b`, xored.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    // The two halves of the product.
    #[allow(clippy::cast_possible_truncation)]
    let (low, high) = (p as u64, (p >> 64) as u64);
    low ^ high
}

/// Names to look up by position: a slice of strings, or a request's list of names (the
/// extender implements this for its JSON name list).
pub trait NameSource {
    /// How many names.
    fn count(&self) -> usize;
    /// The bytes of name `i`, for `i < count()`.
    fn name_bytes(&self, i: usize) -> &[u8];
}

impl<N: std::ops::Deref<Target = str>> NameSource for [N] {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn name_bytes(&self, i: usize) -> &[u8] {
        self[i].as_bytes()
    }
}

impl BuildHasher for NameHash {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(self.seed)
    }
}

/// The hasher of [`NameHash`].
#[derive(Debug)]
pub struct NameHasher(u64);

impl NameHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::K).rotate_left(26);
    }
}

/// The last 1..=7 bytes of a name as one word, from two overlapping loads (or three single
/// bytes), so the hash needs no copy through the stack. Every byte lands in the word, so with the
/// length mixed in, different tails give different words.
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    let u32_at = |i: usize| {
        rest.get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
    };
    if n >= 4 {
        u32_at(0) | (u32_at(n - 4) << 32)
    } else if n > 0 {
        u64::from(rest[0]) | (u64::from(rest[n / 2]) << 8) | (u64::from(rest[n - 1]) << 16)
    } else {
        0
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.add(tail_word(rest) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// Longest name stored inline in a [`NameKey`].
pub(super) const INLINE_NAME: usize = 30;

/// A node name as a map key: inline when it is short (most are), so a lookup compares it without
/// following a pointer; boxed otherwise. Hashes and compares as the `str` it holds.
#[derive(Clone)]
pub(super) enum NameKey {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<str>),
}

impl NameKey {
    pub(super) fn new(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(name.into()),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            Self::Inline { len, bytes } => {
                let b = &bytes[..usize::from(*len)];
                // SAFETY: `b` is a copy of the bytes of a `&str` (see `new`), cut at its length,
                // so it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(b) }
            }
            Self::Heap(s) => s,
        }
    }
}

impl std::borrow::Borrow<str> for NameKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NameKey {}

impl std::hash::Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}
