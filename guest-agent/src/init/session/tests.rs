use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use colo_guest_agent::{Decoder, frame};

use super::*;
use crate::child::tests::spec as sh;

/// The host's end of the channel, as the host agent will drive it.
struct Host {
    sock: UnixStream,
    dec: Decoder<GuestMessage>,
    /// The decoded messages not yet looked at.
    inbox: VecDeque<GuestMessage>,
}

impl Host {
    fn send(&mut self, m: &HostMessage) {
        self.sock.write_all(&frame::to_bytes(m)).unwrap();
    }

    fn recv(&mut self, timeout: Duration) -> Option<GuestMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.inbox.pop_front() {
                return Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 8192];
            match self.sock.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.dec.feed(&buf[..n]);
                    while let Some(m) = self.dec.next_message().unwrap() {
                        self.inbox.push_back(m);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("host read: {e}"),
            }
        }
    }

    fn expect(&mut self) -> GuestMessage {
        self.recv(Duration::from_secs(20))
            .expect("no message from the guest within 20 s")
    }
}

type Outcome = Result<(ExitStatus, bool), SessionError>;

/// Starts a guest session (as the init runs it, minus mounts) on one end of a socket pair.
fn start_guest(capacity: usize, ack_timeout: Duration) -> (Host, JoinHandle<Outcome>) {
    let (g, h) = UnixStream::pair().unwrap();
    let guest = std::thread::spawn(move || {
        let chan = Channel::from_fd(OwnedFd::from(g)).unwrap();
        let mut s = Session::new(chan, Reaper::Own, capacity);
        let spec = s.wait_for_run()?;
        let mut job = Job::spawn(&spec)?;
        let status = s.supervise(&mut job)?;
        let acked = s.finish(ack_timeout)?;
        Ok((status, acked))
    });
    let host = Host {
        sock: h,
        dec: Decoder::new(),
        inbox: VecDeque::new(),
    };
    (host, guest)
}

#[test]
fn a_job_runs_and_its_output_and_exit_code_reach_the_host() {
    let (mut host, guest) = start_guest(4096, Duration::from_secs(10));
    assert_eq!(
        host.expect(),
        GuestMessage::Ready {
            version: PROTOCOL_VERSION
        }
    );
    host.send(&HostMessage::Run(sh("echo hi; exit 7")));
    assert_eq!(
        host.expect(),
        GuestMessage::Output {
            stream: Stream::Stdout,
            offset: 0,
            data: b"hi\n".to_vec()
        }
    );
    assert_eq!(host.expect(), GuestMessage::Exited(ExitStatus::Code(7)));
    host.send(&HostMessage::Ack { upto: 3 });
    let (status, acked) = guest.join().unwrap().unwrap();
    assert_eq!((status, acked), (ExitStatus::Code(7), true));
}

/// Collects output frames from offset `from` until `Exited`, acknowledging as it goes when `ack` says so.
fn collect(host: &mut Host, from: u64, ack: bool) -> (Vec<(Stream, Vec<u8>)>, ExitStatus) {
    let mut got: Vec<(Stream, Vec<u8>)> = Vec::new();
    let mut next = from;
    loop {
        match host.expect() {
            GuestMessage::Output {
                stream,
                offset,
                data,
            } => {
                assert_eq!(offset, next, "output offsets must be contiguous");
                next += data.len() as u64;
                got.push((stream, data));
                if ack {
                    host.send(&HostMessage::Ack { upto: next });
                }
            }
            GuestMessage::Exited(s) => return (got, s),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_full_log_stops_the_job_until_the_host_acknowledges() {
    let (mut host, guest) = start_guest(1024, Duration::from_secs(10));
    host.expect();
    host.send(&HostMessage::Run(sh(
        "head -c 100000 /dev/zero | tr '\\0' x; echo done >&2",
    )));
    // Without acknowledgements the guest sends no more than the log holds.
    let mut held = 0;
    while let Some(m) = host.recv(Duration::from_millis(500)) {
        let GuestMessage::Output { offset, data, .. } = m else {
            panic!("{m:?}")
        };
        assert_eq!(offset, held as u64);
        held += data.len();
    }
    assert_eq!(
        held, 1024,
        "the guest sent beyond its log before any acknowledgement"
    );
    host.send(&HostMessage::Ack { upto: 1024 });
    let (got, status) = collect(&mut host, 1024, true);
    let stdout: usize = got
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, d)| d.len())
        .sum();
    assert_eq!(stdout + held, 100_000);
    assert!(
        got.iter()
            .flat_map(|(s, d)| d.iter().map(move |b| (*s, *b)))
            .all(|(s, b)| { (s == Stream::Stdout && b == b'x') || s == Stream::Stderr })
    );
    let stderr: Vec<u8> = got
        .iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .flat_map(|(_, d)| d.clone())
        .collect();
    assert_eq!(stderr, b"done\n");
    assert_eq!(status, ExitStatus::Code(0));
    assert!(guest.join().unwrap().unwrap().1);
}

#[test]
fn a_signal_from_the_host_ends_the_job() {
    let (mut host, guest) = start_guest(4096, Duration::from_secs(10));
    host.expect();
    host.send(&HostMessage::Run(sh("echo started; sleep 60")));
    assert!(matches!(host.expect(), GuestMessage::Output { .. }));
    host.send(&HostMessage::Signal(9));
    assert_eq!(host.expect(), GuestMessage::Exited(ExitStatus::Signal(9)));
    host.send(&HostMessage::Ack { upto: 8 });
    assert_eq!(
        guest.join().unwrap().unwrap(),
        (ExitStatus::Signal(9), true)
    );
}

#[test]
fn a_resuming_host_gets_unacknowledged_output_and_the_exit_again() {
    let (mut host, guest) = start_guest(4096, Duration::from_secs(10));
    host.expect();
    host.send(&HostMessage::Run(sh("echo one; echo two >&2; exit 2")));
    let (first, status) = collect(&mut host, 0, false);
    assert_eq!(status, ExitStatus::Code(2));
    host.send(&HostMessage::Ack { upto: 2 });
    host.send(&HostMessage::Resume { from: 2 });
    let (again, status) = collect(&mut host, 2, false);
    assert_eq!(status, ExitStatus::Code(2));
    let flat = |v: &[(Stream, Vec<u8>)]| v.iter().flat_map(|(_, d)| d.clone()).collect::<Vec<u8>>();
    assert_eq!(flat(&first), b"one\ntwo\n");
    assert_eq!(flat(&again), b"e\ntwo\n");
    assert_eq!(again.last().unwrap().0, Stream::Stderr);
    host.send(&HostMessage::Ack { upto: 8 });
    assert!(guest.join().unwrap().unwrap().1);
}

#[test]
fn without_the_final_ack_the_guest_gives_up_after_its_timeout() {
    let (mut host, guest) = start_guest(4096, Duration::from_millis(300));
    host.expect();
    host.send(&HostMessage::Run(sh("echo x")));
    collect(&mut host, 0, false);
    let start = Instant::now();
    assert_eq!(guest.join().unwrap().unwrap(), (ExitStatus::Code(0), false));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn protocol_violations_end_the_session_with_an_error() {
    let (mut host, guest) = start_guest(4096, Duration::from_secs(10));
    host.expect();
    host.send(&HostMessage::Run(sh("sleep 60")));
    host.send(&HostMessage::Run(sh("true")));
    assert!(matches!(
        guest.join().unwrap(),
        Err(SessionError::SecondRun)
    ));

    let (mut host, guest) = start_guest(4096, Duration::from_secs(10));
    host.expect();
    host.send(&HostMessage::Run(sh("echo x; sleep 60")));
    host.expect();
    host.send(&HostMessage::Ack { upto: 3 });
    assert!(matches!(
        guest.join().unwrap(),
        Err(SessionError::Output(OutputLogError::AckBeyondEnd {
            upto: 3,
            end: 2
        }))
    ));

    let (mut host, guest) = start_guest(4096, Duration::from_secs(10));
    host.expect();
    host.sock.write_all(&[0xc1, 0x7f, 0, 0, 0, 0]).unwrap();
    let err = guest.join().unwrap().unwrap_err().to_string();
    assert_eq!(err, "bad frame from the host: unknown message type 0x7f");
}
