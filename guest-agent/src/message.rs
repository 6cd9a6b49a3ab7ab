//! The channel's messages, one enum per direction, and their payload encoding.
//!
//! | type | direction | message | payload |
//! |---|---|---|---|
//! | `0x01` | host → guest | [`HostMessage::Run`] | a [`RunSpec`] (at most [`MAX_RUN_PAYLOAD`]) |
//! | `0x02` | host → guest | [`HostMessage::Signal`] | `u32` signal number, 1–64 |
//! | `0x03` | host → guest | [`HostMessage::Ack`] | `u64` output offset |
//! | `0x04` | host → guest | [`HostMessage::Resume`] | `u64` output offset |
//! | `0x81` | guest → host | [`GuestMessage::Ready`] | `u32` protocol version |
//! | `0x82` | guest → host | [`GuestMessage::Output`] | stream `u8`, `u64` offset, 1 B–64 KiB of data |
//! | `0x83` | guest → host | [`GuestMessage::Exited`] | tag `u8` (0 code, 1 signal), `u32` value |
//! | `0x84` | guest → host | [`GuestMessage::Error`] | a string of at most [`MAX_ERROR`] bytes |
//!
//! Output offsets count the bytes of stdout and stderr together, in the order the guest read
//! them from the job, so one `Ack` covers both streams and a reconnected host can ask for
//! everything after the last byte it kept (`Resume`).

use crate::spec::{RunSpec, SpecError};
use crate::wire::{Reader, WireError, put_str, put_u32, put_u64};

/// The protocol version this crate speaks (also the frame header's magic byte's low nibble).
pub const PROTOCOL_VERSION: u32 = 1;
/// The most job output one `Output` frame carries.
pub const MAX_OUTPUT_DATA: usize = 64 * 1024;
/// The largest `Run` payload.
pub const MAX_RUN_PAYLOAD: usize = crate::spec::MAX_ENCODED;
/// The longest `Error` text, in bytes.
pub const MAX_ERROR: usize = 4096;
/// The highest signal number Linux knows (`SIGRTMAX`).
pub const MAX_SIGNAL: u32 = 64;

const RUN: u8 = 0x01;
const SIGNAL: u8 = 0x02;
const ACK: u8 = 0x03;
const RESUME: u8 = 0x04;
const READY: u8 = 0x81;
const OUTPUT: u8 = 0x82;
const EXITED: u8 = 0x83;
const ERROR: u8 = 0x84;

/// Errors of a message's payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A field could not be read.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The `Run` spec is invalid.
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// The type byte names no message of this direction.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
}

/// A job output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How the job's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (0–255).
    Code(u8),
    /// A signal (1–64) killed it.
    Signal(u8),
}

/// What the host sends the guest.
// One `Run` per boot, decoded once: its size beside the small messages costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMessage {
    /// Run this job (once per boot).
    Run(RunSpec),
    /// Send this signal to the job's process group.
    Signal(u32),
    /// The host has durably kept all output before this offset; the guest may forget it.
    Ack {
        /// The first offset the host does not have yet.
        upto: u64,
    },
    /// The host (re)attached: the guest re-sends its state and all output from `from` on.
    Resume {
        /// The first offset the host does not have.
        from: u64,
    },
}

/// What the guest sends the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMessage {
    /// The guest is up and waits for `Run`.
    Ready {
        /// The guest's protocol version.
        version: u32,
    },
    /// Job output at an offset of the combined output stream.
    Output {
        /// Which stream the bytes came from.
        stream: Stream,
        /// The offset of the first byte.
        offset: u64,
        /// The bytes (1 B to [`MAX_OUTPUT_DATA`]).
        data: Vec<u8>,
    },
    /// The job's command ended.
    Exited(ExitStatus),
    /// The guest failed; it powers off after sending this.
    Error {
        /// What failed, with the cause.
        message: String,
    },
}

/// A message of one direction of the channel.
pub trait Message: Sized {
    /// The largest payload of message type `kind`, or `None` for a type this direction does not
    /// have.
    fn max_payload(kind: u8) -> Option<usize>;
    /// The message's type byte.
    fn kind(&self) -> u8;
    /// Appends the payload.
    fn encode_payload(&self, out: &mut Vec<u8>);
    /// Reads a payload of type `kind` (already checked against [`Message::max_payload`]).
    fn decode_payload(kind: u8, payload: &[u8]) -> Result<Self, MessageError>;
}

impl Message for HostMessage {
    fn max_payload(kind: u8) -> Option<usize> {
        match kind {
            RUN => Some(MAX_RUN_PAYLOAD),
            SIGNAL => Some(4),
            ACK | RESUME => Some(8),
            _ => None,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Self::Run(_) => RUN,
            Self::Signal(_) => SIGNAL,
            Self::Ack { .. } => ACK,
            Self::Resume { .. } => RESUME,
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Self::Run(spec) => spec.encode(out),
            Self::Signal(n) => put_u32(out, *n),
            Self::Ack { upto: v } | Self::Resume { from: v } => put_u64(out, *v),
        }
    }

    fn decode_payload(kind: u8, payload: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(payload);
        let m = match kind {
            RUN => Self::Run(RunSpec::decode(&mut r)?),
            SIGNAL => {
                let n = r.u32("signal")?;
                if n == 0 || n > MAX_SIGNAL {
                    return Err(WireError::BadValue {
                        field: "signal",
                        value: u64::from(n),
                    }
                    .into());
                }
                Self::Signal(n)
            }
            ACK => Self::Ack {
                upto: r.u64("ack offset")?,
            },
            RESUME => Self::Resume {
                from: r.u64("resume offset")?,
            },
            other => return Err(MessageError::UnknownType(other)),
        };
        r.finish()?;
        Ok(m)
    }
}

impl GuestMessage {
    /// An `Error` message, its text cut to [`MAX_ERROR`] bytes at a character boundary.
    pub fn error(message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR {
            let mut end = MAX_ERROR;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self::Error { message }
    }
}

impl Message for GuestMessage {
    fn max_payload(kind: u8) -> Option<usize> {
        match kind {
            READY => Some(4),
            OUTPUT => Some(1 + 8 + MAX_OUTPUT_DATA),
            EXITED => Some(5),
            ERROR => Some(2 + MAX_ERROR),
            _ => None,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Self::Ready { .. } => READY,
            Self::Output { .. } => OUTPUT,
            Self::Exited(_) => EXITED,
            Self::Error { .. } => ERROR,
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ready { version } => put_u32(out, *version),
            Self::Output {
                stream,
                offset,
                data,
            } => {
                out.push(match stream {
                    Stream::Stdout => 1,
                    Stream::Stderr => 2,
                });
                put_u64(out, *offset);
                out.extend_from_slice(data);
            }
            Self::Exited(status) => {
                let (tag, v) = match status {
                    ExitStatus::Code(c) => (0, c),
                    ExitStatus::Signal(s) => (1, s),
                };
                out.push(tag);
                put_u32(out, u32::from(*v));
            }
            Self::Error { message } => put_str(out, message),
        }
    }

    fn decode_payload(kind: u8, payload: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(payload);
        let m = match kind {
            READY => Self::Ready {
                version: r.u32("version")?,
            },
            OUTPUT => {
                let stream = match r.u8("stream")? {
                    1 => Stream::Stdout,
                    2 => Stream::Stderr,
                    v => {
                        return Err(WireError::BadValue {
                            field: "stream",
                            value: v.into(),
                        }
                        .into());
                    }
                };
                let offset = r.u64("output offset")?;
                let data = r.rest();
                let len = data.len() as u64;
                if data.is_empty() || offset.checked_add(len).is_none() {
                    return Err(WireError::BadValue {
                        field: "output length",
                        value: len,
                    }
                    .into());
                }
                Self::Output {
                    stream,
                    offset,
                    data: data.to_vec(),
                }
            }
            EXITED => {
                let tag = r.u8("exit tag")?;
                let v = r.u32("exit value")?;
                let bad = |field| {
                    MessageError::from(WireError::BadValue {
                        field,
                        value: v.into(),
                    })
                };
                match tag {
                    0 => Self::Exited(ExitStatus::Code(
                        u8::try_from(v).map_err(|_| bad("exit code"))?,
                    )),
                    1 if (1..=MAX_SIGNAL).contains(&v) => Self::Exited(ExitStatus::Signal(
                        u8::try_from(v).map_err(|_| bad("signal"))?,
                    )),
                    1 => return Err(bad("signal")),
                    t => {
                        return Err(WireError::BadValue {
                            field: "exit tag",
                            value: t.into(),
                        }
                        .into());
                    }
                }
            }
            ERROR => Self::Error {
                message: r.string("error message", MAX_ERROR)?,
            },
            other => return Err(MessageError::UnknownType(other)),
        };
        r.finish()?;
        Ok(m)
    }
}
