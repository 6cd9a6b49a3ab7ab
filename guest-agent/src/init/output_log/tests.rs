use super::*;

fn send_all(log: &mut OutputLog, max: usize) -> Vec<(Stream, u64, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((s, off, data)) = log.next_unsent(max) {
        let data = data.to_vec();
        log.mark_sent(data.len());
        out.push((s, off, data));
    }
    out
}

#[test]
fn output_goes_out_in_order_with_streams_and_offsets() {
    let mut log = OutputLog::new(1024);
    assert_eq!(log.push(Stream::Stdout, b"hel"), 3);
    assert_eq!(log.push(Stream::Stdout, b"lo\n"), 3);
    assert_eq!(log.push(Stream::Stderr, b"oops\n"), 5);
    assert_eq!(log.push(Stream::Stdout, b"bye\n"), 4);
    assert_eq!(log.unsent(), 15);
    let sent = send_all(&mut log, 4);
    assert_eq!(
        sent,
        vec![
            (Stream::Stdout, 0, b"hell".to_vec()),
            (Stream::Stdout, 4, b"o\n".to_vec()),
            (Stream::Stderr, 6, b"oops".to_vec()),
            (Stream::Stderr, 10, b"\n".to_vec()),
            (Stream::Stdout, 11, b"bye\n".to_vec()),
        ]
    );
    assert_eq!(log.unsent(), 0);
    assert!(!log.all_acked());
}

#[test]
fn a_full_log_takes_nothing_until_the_host_acknowledges() {
    let mut log = OutputLog::new(10);
    assert_eq!(log.push(Stream::Stdout, b"0123456789abc"), 10);
    assert_eq!(log.space(), 0);
    assert_eq!(
        log.push(Stream::Stdout, b"x"),
        0,
        "a full log must refuse, not drop"
    );
    send_all(&mut log, 64);
    // Sending frees nothing: the host may still ask for it again.
    assert_eq!(log.space(), 0);
    log.ack(4).unwrap();
    assert_eq!(log.space(), 4);
    assert_eq!(log.push(Stream::Stderr, b"wxyz!"), 4);
    assert_eq!(
        send_all(&mut log, 64),
        vec![(Stream::Stderr, 10, b"wxyz".to_vec())]
    );
    log.ack(14).unwrap();
    assert!(log.all_acked());
    assert_eq!(log.space(), 10);
}

#[test]
fn a_reconnected_host_gets_everything_it_lacks_again() {
    let mut log = OutputLog::new(100);
    log.push(Stream::Stdout, b"abcdef");
    log.push(Stream::Stderr, b"XYZ");
    send_all(&mut log, 100);
    log.ack(2).unwrap();
    log.resume(4).unwrap();
    assert_eq!(
        send_all(&mut log, 100),
        vec![
            (Stream::Stdout, 4, b"ef".to_vec()),
            (Stream::Stderr, 6, b"XYZ".to_vec())
        ]
    );
    // From the acknowledged mark itself.
    log.resume(2).unwrap();
    assert_eq!(
        send_all(&mut log, 100)[0],
        (Stream::Stdout, 2, b"cdef".to_vec())
    );
    // Nothing left to resend at the end.
    log.resume(9).unwrap();
    assert_eq!(log.next_unsent(100), None);
}

#[test]
fn acknowledgements_beyond_the_output_or_resumes_outside_it_are_errors() {
    let mut log = OutputLog::new(100);
    log.push(Stream::Stdout, b"abc");
    assert_eq!(
        log.ack(4),
        Err(OutputLogError::AckBeyondEnd { upto: 4, end: 3 })
    );
    log.ack(2).unwrap();
    assert_eq!(
        log.resume(1),
        Err(OutputLogError::ResumeOutOfRange {
            from: 1,
            acked: 2,
            end: 3
        })
    );
    assert_eq!(
        log.resume(4),
        Err(OutputLogError::ResumeOutOfRange {
            from: 4,
            acked: 2,
            end: 3
        })
    );
    // A stale acknowledgement changes nothing.
    log.ack(1).unwrap();
    assert_eq!(log.space(), 99);
}

#[test]
fn an_ack_of_unsent_output_moves_the_send_mark() {
    // A host that reconnects may acknowledge what the earlier connection received.
    let mut log = OutputLog::new(100);
    log.push(Stream::Stdout, b"abcdef");
    log.ack(3).unwrap();
    assert_eq!(log.next_unsent(100), Some((Stream::Stdout, 3, &b"def"[..])));
}
