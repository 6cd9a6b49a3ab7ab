//! Frames on the byte stream: a 6-byte header (magic-and-version byte `0xC1`, message type,
//! payload length as `u32` little-endian) and the payload.
//!
//! [`Decoder`] takes the stream in pieces of any size and yields whole messages. It checks each
//! header as soon as its 6 bytes are in: an unknown type or a length above the type's bound is
//! an error before any of the payload is buffered, so the peer cannot make it allocate more than
//! one bounded frame beyond what the caller fed it. After an error the stream is out of step and
//! the decoder keeps returning that error; the caller drops the connection.

use std::marker::PhantomData;

use crate::message::{Message, MessageError, PROTOCOL_VERSION};

/// The first byte of every frame: `0xC0` and the protocol version.
pub const MAGIC: u8 = 0xC0 | PROTOCOL_VERSION as u8;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 6;

/// Errors of the frame stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte of a frame is not [`MAGIC`] (another protocol version, or a stream out of
    /// step).
    #[error(
        "frame starts with {0:#04x}, not {MAGIC:#04x} (another protocol version or a broken stream)"
    )]
    BadMagic(u8),
    /// The type byte names no message of this direction.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// The header announces a payload above the type's bound.
    #[error("message type {kind:#04x} announces {len} bytes, the limit is {max}")]
    TooLong {
        /// The type.
        kind: u8,
        /// The announced length.
        len: u32,
        /// The type's bound.
        max: usize,
    },
    /// The payload is malformed.
    #[error("message type {kind:#04x}: {source}")]
    Payload {
        /// The type.
        kind: u8,
        /// What is wrong.
        source: MessageError,
    },
}

/// Appends `message` as one frame.
pub fn encode<M: Message>(message: &M, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[MAGIC, message.kind(), 0, 0, 0, 0]);
    message.encode_payload(out);
    let len = u32::try_from(out.len() - start - HEADER_LEN).unwrap_or(u32::MAX);
    out[start + 2..start + HEADER_LEN].copy_from_slice(&len.to_le_bytes());
}

/// One frame as bytes.
pub fn to_bytes<M: Message>(message: &M) -> Vec<u8> {
    let mut out = Vec::new();
    encode(message, &mut out);
    out
}

/// An incremental decoder of one direction's frames.
#[derive(Debug)]
pub struct Decoder<M> {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    failed: Option<FrameError>,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message> Default for Decoder<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Message> Decoder<M> {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            failed: None,
            _message: PhantomData,
        }
    }

    /// Adds bytes read from the stream. Call [`Decoder::next_message`] until it returns
    /// `Ok(None)` before feeding more, so the buffer holds at most one partial frame besides
    /// the newest piece.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<M>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.decode_one();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn decode_one(&mut self) -> Result<Option<M>, FrameError> {
        let avail = &self.buf[self.pos..];
        let Some(head) = avail.first_chunk::<HEADER_LEN>() else {
            // Check what there is of the header already: a broken stream fails at its first byte.
            if let Some(&b) = avail.first() {
                if b != MAGIC {
                    return Err(FrameError::BadMagic(b));
                }
                if let Some(&kind) = avail.get(1) {
                    M::max_payload(kind).ok_or(FrameError::UnknownType(kind))?;
                }
            }
            return Ok(None);
        };
        if head[0] != MAGIC {
            return Err(FrameError::BadMagic(head[0]));
        }
        let kind = head[1];
        let max = M::max_payload(kind).ok_or(FrameError::UnknownType(kind))?;
        let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        if n > max {
            return Err(FrameError::TooLong { kind, len, max });
        }
        let Some(payload) = avail.get(HEADER_LEN..HEADER_LEN + n) else {
            return Ok(None);
        };
        let m = M::decode_payload(kind, payload)
            .map_err(|source| FrameError::Payload { kind, source })?;
        self.pos += HEADER_LEN + n;
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests;
