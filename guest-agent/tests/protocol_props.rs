//! Properties of the protocol against arbitrary input: any message round-trips through any
//! chunking of the stream, and arbitrary bytes from a hostile peer give messages or an error,
//! never a panic, with the decoder's buffer bounded by one frame plus the piece fed.

use colo_guest_agent::frame::{self, HEADER_LEN};
use colo_guest_agent::message::{MAX_OUTPUT_DATA, MAX_RUN_PAYLOAD};
use colo_guest_agent::{
    Decoder, ExitStatus, GuestMessage, HostMessage, Resource, Rlimit, RootDisk, RunSpec, Stream,
};
use proptest::prelude::*;

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./ -]{0,40}"
}

fn spec() -> impl Strategy<Value = RunSpec> {
    (
        "/[a-z/]{0,30}",
        prop::collection::vec(word(), 0..8),
        prop::collection::vec(
            ("[A-Z_]{1,10}", word()).prop_map(|(k, v)| format!("{k}={v}")),
            0..8,
        ),
        any::<(u32, u32)>(),
        prop::collection::vec((0u8..16, any::<u64>(), any::<u64>()), 0..4),
        "[a-z0-9.-]{1,64}",
        prop::option::of(("/dev/[a-z]{1,8}", "[a-z0-9]{1,16}")),
    )
        .prop_map(|(path, args, env, (uid, gid), limits, hostname, root)| {
            let mut rlimits: Vec<Rlimit> = Vec::new();
            for (r, a, b) in limits {
                let resource = Resource::from_linux(r).unwrap();
                if rlimits.iter().all(|l| l.resource != resource) {
                    rlimits.push(Rlimit {
                        resource,
                        soft: a.min(b),
                        hard: a.max(b),
                    });
                }
            }
            RunSpec {
                path,
                args,
                env,
                workdir: "/".into(),
                uid,
                gid,
                rlimits,
                hostname,
                root: root.map(|(device, fstype)| RootDisk {
                    device,
                    fstype,
                    volumes: vec![],
                }),
            }
        })
}

fn host_message() -> impl Strategy<Value = HostMessage> {
    prop_oneof![
        spec().prop_map(HostMessage::Run),
        (1u32..=64).prop_map(HostMessage::Signal),
        any::<u64>().prop_map(|upto| HostMessage::Ack { upto }),
        any::<u64>().prop_map(|from| HostMessage::Resume { from }),
    ]
}

fn guest_message() -> impl Strategy<Value = GuestMessage> {
    prop_oneof![
        any::<u32>().prop_map(|version| GuestMessage::Ready { version }),
        (
            any::<bool>(),
            0u64..u64::MAX / 2,
            prop::collection::vec(any::<u8>(), 1..2000)
        )
            .prop_map(|(out, offset, data)| GuestMessage::Output {
                stream: if out { Stream::Stdout } else { Stream::Stderr },
                offset,
                data,
            }),
        any::<u8>().prop_map(|c| GuestMessage::Exited(ExitStatus::Code(c))),
        (1u8..=64).prop_map(|s| GuestMessage::Exited(ExitStatus::Signal(s))),
        ".{0,200}".prop_map(GuestMessage::error),
    ]
}

/// Feeds `bytes` in pieces of the given sizes; returns the messages, or the first error.
fn decode<M: colo_guest_agent::Message>(
    bytes: &[u8],
    pieces: &[usize],
    max_frame: usize,
) -> Result<Vec<M>, colo_guest_agent::FrameError> {
    let mut d = Decoder::<M>::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        d.feed(piece);
        assert!(
            d.buffered() <= max_frame + n,
            "buffer grew to {}",
            d.buffered()
        );
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
    }
    Ok(out)
}

proptest! {
    #[test]
    fn host_messages_round_trip_through_any_chunking(
        msgs in prop::collection::vec(host_message(), 1..6),
        pieces in prop::collection::vec(1usize..300, 1..5),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            // The generated specs must be valid, or the round trip would test nothing.
            if let HostMessage::Run(spec) = m {
                spec.validate().unwrap();
            }
            frame::encode(m, &mut bytes);
        }
        prop_assert_eq!(decode::<HostMessage>(&bytes, &pieces, HEADER_LEN + MAX_RUN_PAYLOAD).unwrap(), msgs);
    }

    #[test]
    fn guest_messages_round_trip_through_any_chunking(
        msgs in prop::collection::vec(guest_message(), 1..6),
        pieces in prop::collection::vec(1usize..3000, 1..5),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            frame::encode(m, &mut bytes);
        }
        let max = HEADER_LEN + 9 + MAX_OUTPUT_DATA;
        prop_assert_eq!(decode::<GuestMessage>(&bytes, &pieces, max).unwrap(), msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        pieces in prop::collection::vec(1usize..64, 1..4),
    ) {
        let _ = decode::<HostMessage>(&bytes, &pieces, HEADER_LEN + MAX_RUN_PAYLOAD);
        let _ = decode::<GuestMessage>(&bytes, &pieces, HEADER_LEN + 9 + MAX_OUTPUT_DATA);
    }

    #[test]
    fn a_valid_frame_with_one_byte_changed_decodes_or_fails_cleanly(
        msg in host_message(),
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let mut bytes = frame::to_bytes(&msg);
        let i = at.index(bytes.len());
        bytes[i] = to;
        if let Ok(got) = decode::<HostMessage>(&bytes, &[bytes.len()], HEADER_LEN + MAX_RUN_PAYLOAD) {
            // Whatever decodes is a valid message of its kind.
            for m in got {
                if let HostMessage::Run(spec) = m {
                    prop_assert!(spec.validate().is_ok());
                }
            }
        }
    }
}
