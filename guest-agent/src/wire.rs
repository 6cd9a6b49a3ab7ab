//! The field encoding inside a frame's payload: little-endian integers and length-prefixed UTF-8
//! strings (a `u16` length, so no string field can claim more than 64 KiB).
//!
//! Reading never trusts the peer: every length is checked against what is left of the payload
//! and against the field's own bound before anything is allocated, and a payload must be
//! consumed exactly (trailing bytes are an error).

/// Errors of reading a payload's fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The payload ended inside a field.
    #[error("payload truncated: {field} needs {needed} more bytes, {left} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the payload.
        left: usize,
    },
    /// A string or list is longer than its field allows.
    #[error("{field} is {len} long, the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its claimed length (bytes for strings, entries for lists).
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A field holds a value outside its domain.
    #[error("{field} has the invalid value {value}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value read.
        value: u64,
    },
    /// Bytes are left after the message's last field.
    #[error("{0} bytes after the message's last field")]
    Trailing(usize),
}

/// A cursor over one payload.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Self { rest: payload }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated {
                field,
                needed: n,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(field, 1)?[0])
    }

    /// Reads a `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Reads a `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(field, 8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads a list length (`u16`) no greater than `max`.
    pub fn count(&mut self, field: &'static str, max: usize) -> Result<usize, WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(WireError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// Reads a string of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, max: usize) -> Result<String, WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(WireError::TooLong { field, len, max });
        }
        let bytes = self.take(field, len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8 { field })?;
        Ok(s.to_owned())
    }

    /// Reads the rest of the payload as raw bytes.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Checks that the whole payload was read.
    pub fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.rest.len()))
        }
    }
}

/// Appends a `u16`.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `u32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `u64`.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a list length. The caller has validated the list against its bound (all bounds are
/// below `u16::MAX`); a longer list is cut to what a `u16` says, which the peer then rejects as
/// malformed rather than misreading.
pub fn put_count(out: &mut Vec<u8>, len: usize) {
    put_u16(out, u16::try_from(len).unwrap_or(u16::MAX));
}

/// Appends a length-prefixed string. As with [`put_count`], the caller has bounded it.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    put_u16(out, len);
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_strings_round_trip() {
        let mut out = Vec::new();
        out.push(7);
        put_u16(&mut out, 0xbeef);
        put_u32(&mut out, 0xdead_beef);
        put_u64(&mut out, u64::MAX - 1);
        put_str(&mut out, "héllo");
        put_count(&mut out, 3);
        let mut r = Reader::new(&out);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0xbeef);
        assert_eq!(r.u32("c").unwrap(), 0xdead_beef);
        assert_eq!(r.u64("d").unwrap(), u64::MAX - 1);
        assert_eq!(r.string("e", 16).unwrap(), "héllo");
        assert_eq!(r.count("f", 3).unwrap(), 3);
        r.finish().unwrap();
    }

    #[test]
    fn truncated_fields_are_errors() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(
            r.u32("x"),
            Err(WireError::Truncated {
                field: "x",
                needed: 4,
                left: 3
            })
        );
        // A string whose length claims more than the payload holds.
        let mut out = Vec::new();
        put_u16(&mut out, 10);
        out.extend_from_slice(b"abc");
        let mut r = Reader::new(&out);
        assert!(matches!(
            r.string("s", 100),
            Err(WireError::Truncated { needed: 10, .. })
        ));
    }

    #[test]
    fn over_long_strings_and_lists_are_refused_before_reading() {
        let mut out = Vec::new();
        put_str(&mut out, "abcdef");
        let mut r = Reader::new(&out);
        assert_eq!(
            r.string("s", 5),
            Err(WireError::TooLong {
                field: "s",
                len: 6,
                max: 5
            })
        );
        let mut out = Vec::new();
        put_count(&mut out, 9);
        assert_eq!(
            Reader::new(&out).count("l", 8),
            Err(WireError::TooLong {
                field: "l",
                len: 9,
                max: 8
            })
        );
    }

    #[test]
    fn non_utf8_and_trailing_bytes_are_errors() {
        let mut out = Vec::new();
        put_u16(&mut out, 2);
        out.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(
            Reader::new(&out).string("s", 8),
            Err(WireError::NotUtf8 { field: "s" })
        );
        let mut r = Reader::new(&[1, 2]);
        r.u8("a").unwrap();
        assert_eq!(r.finish(), Err(WireError::Trailing(1)));
    }
}
