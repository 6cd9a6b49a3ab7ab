//! The control socket protocol: one request per line, one JSON reply per line.
//!
//! Requests (text): `pause`, `resume`, `stats`, `shutdown`,
//! `set_io_limit DISK bw=BYTES_PER_S iops=N` (DISK = index or path; 0 = unlimited).
//! Replies: `{"ok":true, ...}` or `{"ok":false,"error":"..."}`; `stats` adds the fields of
//! [`Stats`]. [`ControlClient`] speaks the protocol for the agent and the tests.

mod client;
mod protocol;

pub use client::{ControlClient, ControlClientError};
pub use protocol::{
    ControlRequest, DiskStats, ExitCounts, Lines, MAX_LINE, MemoryStats, RequestParseError, Stats,
    VcpuStats, VmState, error_reply, ok_reply, take_lines,
};
