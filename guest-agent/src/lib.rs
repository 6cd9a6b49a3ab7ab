//! colo's Linux guests: the channel between the host and the in-guest agent.
//!
//! The host talks to a Linux guest over one virtio-console port (the guest's `/dev/hvc0`): a
//! single byte stream that carries framed messages both ways. This library is that protocol,
//! shared by the guest's init (`colo-guest-init`, this crate's binary) and the host side.
//!
//! | module | what |
//! |---|---|
//! | [`frame`] | the frame header, encoding, and an incremental [`frame::Decoder`] for a byte stream |
//! | [`message`] | the messages of each direction ([`HostMessage`], [`GuestMessage`]) and their payloads |
//! | [`spec`] | the job a guest runs ([`RunSpec`]) and its bounds |
//! | [`wire`] | the payload field encoding: integers and length-prefixed strings |
//!
//! Every length and count read from the peer is bounded before anything is allocated; bad input
//! is an error, never a panic.

pub mod frame;
pub mod message;
pub mod spec;
pub mod wire;

pub use frame::{Decoder, FrameError};
pub use message::{ExitStatus, GuestMessage, HostMessage, Message, Stream};
pub use spec::{Resource, Rlimit, RootDisk, RunSpec, VolumeDisk};
