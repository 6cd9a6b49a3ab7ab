use super::*;
use crate::message::{ExitStatus, GuestMessage, HostMessage, MAX_ERROR, MAX_OUTPUT_DATA, Stream};
use crate::spec::{Resource, Rlimit, RootDisk, RunSpec};

fn spec() -> RunSpec {
    RunSpec {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), "echo hi; exit 7".into()],
        env: vec!["PATH=/bin".into()],
        workdir: "/tmp".into(),
        uid: 0,
        gid: 0,
        rlimits: vec![Rlimit {
            resource: Resource::Nofile,
            soft: 64,
            hard: 64,
        }],
        hostname: "guest".into(),
        root: Some(RootDisk {
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            volumes: vec![],
        }),
    }
}

fn host_messages() -> Vec<HostMessage> {
    vec![
        HostMessage::Run(spec()),
        HostMessage::Run(RunSpec {
            root: None,
            rlimits: vec![],
            ..spec()
        }),
        HostMessage::Signal(1),
        HostMessage::Signal(15),
        HostMessage::Signal(64),
        HostMessage::Ack { upto: 0 },
        HostMessage::Ack { upto: u64::MAX },
        HostMessage::Resume { from: 12345 },
    ]
}

fn guest_messages() -> Vec<GuestMessage> {
    vec![
        GuestMessage::Ready { version: 1 },
        GuestMessage::Output {
            stream: Stream::Stdout,
            offset: 0,
            data: b"hi\n".to_vec(),
        },
        GuestMessage::Output {
            stream: Stream::Stderr,
            offset: u64::MAX - MAX_OUTPUT_DATA as u64,
            data: vec![0xab; MAX_OUTPUT_DATA],
        },
        GuestMessage::Exited(ExitStatus::Code(0)),
        GuestMessage::Exited(ExitStatus::Code(255)),
        GuestMessage::Exited(ExitStatus::Signal(9)),
        GuestMessage::Exited(ExitStatus::Signal(64)),
        GuestMessage::error("mount /dev/vda: No such device"),
        GuestMessage::error(""),
    ]
}

fn decode_all<M: Message>(bytes: &[u8], piece: usize) -> Result<Vec<M>, FrameError> {
    let mut d = Decoder::<M>::new();
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        d.feed(chunk);
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
    }
    assert_eq!(d.buffered(), 0, "bytes left undecoded");
    Ok(out)
}

#[test]
fn every_message_round_trips_whole_and_in_pieces() {
    let host = host_messages();
    let mut stream = Vec::new();
    for m in &host {
        encode(m, &mut stream);
    }
    for piece in [1, 2, 5, 6, 7, 100, stream.len()] {
        assert_eq!(
            decode_all::<HostMessage>(&stream, piece).unwrap(),
            host,
            "pieces of {piece}"
        );
    }
    let guest = guest_messages();
    let mut stream = Vec::new();
    for m in &guest {
        encode(m, &mut stream);
    }
    for piece in [1, 3, 6, 4096, stream.len()] {
        assert_eq!(
            decode_all::<GuestMessage>(&stream, piece).unwrap(),
            guest,
            "pieces of {piece}"
        );
    }
}

#[test]
fn the_header_is_magic_type_and_length() {
    let b = to_bytes(&HostMessage::Ack { upto: 0x0102 });
    assert_eq!(b, [0xc1, 0x03, 8, 0, 0, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn a_long_error_text_is_cut_at_a_character_boundary() {
    let GuestMessage::Error { message } = GuestMessage::error("é".repeat(MAX_ERROR)) else {
        panic!("not an error message");
    };
    assert!(message.len() <= MAX_ERROR && message.len() > MAX_ERROR - 2);
    let back = decode_all::<GuestMessage>(
        &to_bytes(&GuestMessage::Error {
            message: message.clone(),
        }),
        9,
    );
    assert_eq!(back.unwrap(), vec![GuestMessage::Error { message }]);
}

#[test]
fn a_bad_magic_byte_fails_at_once_and_stays_failed() {
    let mut d = Decoder::<HostMessage>::new();
    d.feed(&[0xc2]);
    assert_eq!(d.next_message(), Err(FrameError::BadMagic(0xc2)));
    d.feed(&to_bytes(&HostMessage::Signal(9)));
    assert_eq!(d.next_message(), Err(FrameError::BadMagic(0xc2)));
}

#[test]
fn a_type_of_the_other_direction_is_unknown() {
    for b in guest_messages().iter().map(to_bytes) {
        let mut d = Decoder::<HostMessage>::new();
        d.feed(&b[..2]);
        assert_eq!(d.next_message(), Err(FrameError::UnknownType(b[1])));
    }
    for b in host_messages().iter().map(to_bytes) {
        let mut d = Decoder::<GuestMessage>::new();
        d.feed(&b);
        assert_eq!(d.next_message(), Err(FrameError::UnknownType(b[1])));
    }
    let mut d = Decoder::<HostMessage>::new();
    d.feed(&[MAGIC, 0x00, 0, 0, 0, 0]);
    assert_eq!(d.next_message(), Err(FrameError::UnknownType(0)));
}

#[test]
fn an_oversized_length_fails_before_the_payload_arrives() {
    let cases: [(u8, u32, usize); 4] = [
        (0x01, 64 * 1024 + 1, 64 * 1024),
        (0x02, 5, 4),
        (0x03, u32::MAX, 8),
        (0x04, 9, 8),
    ];
    for (kind, len, max) in cases {
        let mut d = Decoder::<HostMessage>::new();
        let mut h = vec![MAGIC, kind];
        h.extend_from_slice(&len.to_le_bytes());
        d.feed(&h);
        assert_eq!(
            d.next_message(),
            Err(FrameError::TooLong { kind, len, max })
        );
    }
    let mut d = Decoder::<GuestMessage>::new();
    let len = (1 + 8 + MAX_OUTPUT_DATA + 1) as u32;
    let mut h = vec![MAGIC, 0x82];
    h.extend_from_slice(&len.to_le_bytes());
    d.feed(&h);
    assert!(matches!(
        d.next_message(),
        Err(FrameError::TooLong { kind: 0x82, .. })
    ));
}

/// Re-frames `payload` (a message's payload cut or extended) with a header that matches it.
fn reframed(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![MAGIC, kind];
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

#[test]
fn truncated_or_padded_payloads_are_errors() {
    for m in host_messages() {
        let full = to_bytes(&m);
        let payload = &full[HEADER_LEN..];
        for cut in 0..payload.len() {
            let r = decode_all::<HostMessage>(&reframed(full[1], &payload[..cut]), 64);
            assert!(
                matches!(r, Err(FrameError::Payload { .. })),
                "{m:?} cut at {cut}: {r:?}"
            );
        }
        let mut padded = payload.to_vec();
        padded.push(0);
        let r = decode_all::<HostMessage>(&reframed(full[1], &padded), 64);
        assert!(
            matches!(
                r,
                Err(FrameError::Payload { .. }) | Err(FrameError::TooLong { .. })
            ),
            "{m:?} padded: {r:?}"
        );
    }
    for m in guest_messages() {
        let full = to_bytes(&m);
        let payload = &full[HEADER_LEN..];
        // Output's data is the rest of the payload: any cut that keeps a byte of data is valid.
        let valid_from = if full[1] == 0x82 { 10 } else { payload.len() };
        for cut in 0..valid_from.min(payload.len()) {
            let r = decode_all::<GuestMessage>(&reframed(full[1], &payload[..cut]), 64);
            assert!(
                matches!(r, Err(FrameError::Payload { .. })),
                "{m:?} cut at {cut}: {r:?}"
            );
        }
    }
}

#[test]
fn out_of_domain_values_are_errors() {
    let bad_host: Vec<(u8, Vec<u8>)> = vec![
        (0x02, 0u32.to_le_bytes().to_vec()),
        (0x02, 65u32.to_le_bytes().to_vec()),
        (0x02, u32::MAX.to_le_bytes().to_vec()),
    ];
    for (kind, payload) in bad_host {
        let r = decode_all::<HostMessage>(&reframed(kind, &payload), 64);
        assert!(
            matches!(r, Err(FrameError::Payload { .. })),
            "{payload:?}: {r:?}"
        );
    }
    let exited = |tag: u8, v: u32| {
        let mut p = vec![tag];
        p.extend_from_slice(&v.to_le_bytes());
        p
    };
    let mut overflowing = vec![1];
    overflowing.extend_from_slice(&u64::MAX.to_le_bytes());
    overflowing.push(b'x');
    let bad_guest: Vec<(u8, Vec<u8>)> = vec![
        (0x83, exited(0, 256)),
        (0x83, exited(1, 0)),
        (0x83, exited(1, 65)),
        (0x83, exited(2, 0)),
        (0x82, {
            let mut p = vec![3];
            p.extend_from_slice(&[0; 8]);
            p.push(b'x');
            p
        }),
        (0x82, overflowing),
        (0x84, {
            let mut p = (2u16).to_le_bytes().to_vec();
            p.extend_from_slice(&[0xc3, 0x28]);
            p
        }),
    ];
    for (kind, payload) in bad_guest {
        let r = decode_all::<GuestMessage>(&reframed(kind, &payload), 64);
        assert!(
            matches!(r, Err(FrameError::Payload { .. })),
            "{kind:#x} {payload:?}: {r:?}"
        );
    }
}

#[test]
fn empty_output_is_an_error() {
    let r = decode_all::<GuestMessage>(&reframed(0x82, &[1, 0, 0, 0, 0, 0, 0, 0, 0]), 64);
    assert!(
        matches!(r, Err(FrameError::Payload { kind: 0x82, .. })),
        "{r:?}"
    );
}

#[test]
fn a_partial_frame_waits_for_more() {
    let b = to_bytes(&HostMessage::Run(spec()));
    let mut d = Decoder::<HostMessage>::new();
    d.feed(&b[..b.len() - 1]);
    assert_eq!(d.next_message(), Ok(None));
    assert_eq!(d.buffered(), b.len() - 1);
    d.feed(&b[b.len() - 1..]);
    assert_eq!(d.next_message(), Ok(Some(HostMessage::Run(spec()))));
    assert_eq!(d.next_message(), Ok(None));
}
