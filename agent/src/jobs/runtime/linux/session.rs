//! The agent's end of a Linux guest's channel: it hands the in-guest agent the program
//! (`Run`), keeps the program's output in the job's `guest/output.log`, acknowledges it,
//! forwards signals, and records how the program ended ([`GuestExit`]).
//!
//! Everything it needs after an agent restart is on disk in `guest/`: the `Run` frame, whether
//! it went out, and the output offset kept so far. A new agent connects again and sends
//! `Resume` from that offset: the in-guest agent holds unacknowledged output (and the exit
//! status) meanwhile and sends them again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colo_guest_agent::{Decoder, GuestMessage, HostMessage, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::exit::GuestExit;

/// The `Run` frame for the guest, written when the job is prepared.
pub const RUN_FILE: &str = "run.frame";
/// Whether `Run` went out, and the output offset kept.
const STATE_FILE: &str = "state";
/// The program's stdout and stderr, in the order the guest read them.
pub const OUTPUT_FILE: &str = "output.log";
/// How long a first connection waits for the guest's `Ready` before asking for it.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Connections in a row that may start with a torn frame before the guest counts as broken.
const MAX_TORN: u32 = 3;
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A job's link to its guest: the task that follows the channel, and the way to signal the
/// program. Shared by the clones of the job's sandbox.
#[derive(Debug, Default)]
pub struct GuestLink {
    inner: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    signals: mpsc::UnboundedSender<u32>,
    task: tokio::task::JoinHandle<()>,
}

impl GuestLink {
    /// Starts following the guest of job `id` (once; later calls do nothing): its channel at
    /// `channel`, its files in `dir`, at most `log_limit` bytes of output kept (the older half
    /// in `output.log.1`).
    pub fn start(self: &Arc<Self>, id: &str, channel: &Path, dir: &Path, log_limit: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return;
        }
        let (signals, rx) = mpsc::unbounded_channel();
        let follower = Follower {
            id: id.to_string(),
            channel: channel.to_path_buf(),
            dir: dir.to_path_buf(),
            log_limit,
        };
        let task = tokio::spawn(follower.run(rx));
        *g = Some(Running { signals, task });
    }

    /// Asks the guest to send `signal` to the program; `false` when no link is running.
    pub fn signal(&self, signal: u32) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .is_some_and(|r| !r.task.is_finished() && r.signals.send(signal).is_ok())
    }

    /// Stops following (the job has ended).
    pub fn stop(&self) {
        if let Some(r) = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take() {
            r.task.abort();
        }
    }
}

/// What the follower keeps across connections and agent restarts.
#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    run_sent: bool,
    offset: u64,
}

impl State {
    fn load(dir: &Path) -> Self {
        let text = std::fs::read_to_string(dir.join(STATE_FILE)).unwrap_or_default();
        let mut it = text.split_whitespace();
        Self {
            run_sent: it.next() == Some("1"),
            offset: it.next().and_then(|o| o.parse().ok()).unwrap_or(0),
        }
    }

    fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("state.tmp");
        std::fs::write(
            &tmp,
            format!("{} {}\n", u8::from(self.run_sent), self.offset),
        )?;
        std::fs::rename(tmp, dir.join(STATE_FILE))
    }
}

/// `output.log`, rotated to `output.log.1` when it reaches half the limit.
struct OutputFile {
    path: PathBuf,
    half: u64,
    size: u64,
}

impl OutputFile {
    fn new(dir: &Path, limit: u64) -> Self {
        let path = dir.join(OUTPUT_FILE);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        Self {
            path,
            half: (limit / 2).max(64 * 1024),
            size,
        }
    }

    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.half {
            std::fs::rename(&self.path, colo_vmm::older_half(&self.path))?;
            self.size = 0;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }
}

/// Why a conversation ended.
enum End {
    /// The channel closed or failed: connect again.
    Closed,
    /// Stop following (the link was dropped, or the guest broke the protocol).
    Done,
}

struct Follower {
    id: String,
    channel: PathBuf,
    dir: PathBuf,
    log_limit: u64,
}

impl Follower {
    async fn run(self, mut signals: mpsc::UnboundedReceiver<u32>) {
        let run = match std::fs::read(self.dir.join(RUN_FILE)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(job = %self.id, error = %e, "no Run frame for the guest");
                return;
            }
        };
        let mut state = State::load(&self.dir);
        let mut out = OutputFile::new(&self.dir, self.log_limit);
        let mut backoff = Duration::from_millis(20);
        let mut torn = 0;
        loop {
            let stream = match UnixStream::connect(&self.channel).await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(20);
            tracing::debug!(job = %self.id, offset = state.offset, "connected to the guest");
            match self
                .converse(stream, &run, &mut state, &mut out, &mut signals, &mut torn)
                .await
            {
                End::Closed => tokio::time::sleep(backoff).await,
                End::Done => return,
            }
        }
    }

    async fn converse(
        &self,
        mut stream: UnixStream,
        run: &[u8],
        state: &mut State,
        out: &mut OutputFile,
        signals: &mut mpsc::UnboundedReceiver<u32>,
        torn: &mut u32,
    ) -> End {
        // The host speaks only after this boot's `Ready`: until its channel is in raw mode the
        // guest's console echoes what it gets. So a first connection waits for `Ready` (the VMM
        // holds the guest's output until a client connects); a re-attach, to a guest that took
        // its program already, asks it to send again what was not kept. A guest that has not
        // said `Ready` within READY_WAIT is asked too (a restart between `Ready` and `Run`).
        let mut resume_at = if state.run_sent {
            Some(tokio::time::Instant::now())
        } else {
            Some(tokio::time::Instant::now() + READY_WAIT)
        };
        let mut dec = Decoder::<GuestMessage>::new();
        let mut decoded = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let far = tokio::time::Instant::now() + READY_WAIT;
            let n = tokio::select! {
                _ = tokio::time::sleep_until(resume_at.unwrap_or(far)), if resume_at.is_some() => {
                    resume_at = None;
                    let resume = frame::to_bytes(&HostMessage::Resume { from: state.offset });
                    if stream.write_all(&resume).await.is_err() {
                        return End::Closed;
                    }
                    continue;
                }
                r = stream.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(n) => n,
                },
                s = signals.recv() => {
                    let Some(s) = s else { return End::Done };
                    if stream.write_all(&frame::to_bytes(&HostMessage::Signal(s))).await.is_err() {
                        return End::Closed;
                    }
                    continue;
                }
            };
            dec.feed(&buf[..n]);
            loop {
                let m = match dec.next_message() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    // A channel that tears frames when no client reads (QEMU's virtconsole
                    // drops what it cannot write) may hand a new connection the tail of a
                    // frame: before anything decoded on this connection, connect again (the
                    // guest sends everything again after `Resume`), a few times.
                    Err(e) if !decoded && *torn < MAX_TORN => {
                        *torn += 1;
                        tracing::warn!(job = %self.id, error = %e, "a torn frame at the start of the channel; connecting again");
                        return End::Closed;
                    }
                    Err(e) => return self.broken(&e),
                };
                if !decoded {
                    decoded = true;
                    *torn = 0;
                }
                if matches!(m, GuestMessage::Ready { .. }) {
                    resume_at = None;
                }
                let reply = match self.on_message(m, run, state, out) {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return self.broken(&e);
                    }
                    Err(e) => {
                        tracing::error!(job = %self.id, error = %e, "cannot keep the guest's output");
                        return End::Closed;
                    }
                };
                if let Some(bytes) = reply
                    && stream.write_all(&bytes).await.is_err()
                {
                    return End::Closed;
                }
            }
        }
    }

    /// Stops following a guest that broke the protocol, recording why as its end (the program's
    /// output stops being taken: the guest holds it, and the job ends by its deadline or a stop).
    fn broken(&self, e: &dyn std::fmt::Display) -> End {
        tracing::warn!(job = %self.id, error = %e, "the guest broke the channel protocol; no longer following it");
        if GuestExit::read(&self.dir).is_none() {
            let _ = GuestExit::Error(format!("the guest broke the channel protocol: {e}"))
                .write(&self.dir);
        }
        End::Done
    }

    /// Handles one message; returns what to send back.
    fn on_message(
        &self,
        m: GuestMessage,
        run: &[u8],
        state: &mut State,
        out: &mut OutputFile,
    ) -> std::io::Result<Option<Vec<u8>>> {
        Ok(match m {
            GuestMessage::Ready { version } if !state.run_sent => {
                tracing::info!(job = %self.id, version, "the guest is ready; sending the program");
                state.run_sent = true;
                state.save(&self.dir)?;
                Some(run.to_vec())
            }
            GuestMessage::Ready { .. } => None,
            GuestMessage::Output { offset, data, .. } => {
                let Some(end) = offset.checked_add(data.len() as u64) else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("output at offset {offset}, past the end of any stream"),
                    ));
                };
                if end <= state.offset {
                    // Sent again after a reconnect: kept already.
                    return Ok(Some(frame::to_bytes(&HostMessage::Ack {
                        upto: state.offset,
                    })));
                }
                if offset > state.offset {
                    tracing::warn!(job = %self.id, kept = state.offset, offset, "the guest skipped output");
                }
                let skip = usize::try_from(state.offset.saturating_sub(offset)).unwrap_or(0);
                out.append(&data[skip.min(data.len())..])?;
                state.offset = end;
                state.save(&self.dir)?;
                Some(frame::to_bytes(&HostMessage::Ack { upto: end }))
            }
            GuestMessage::Exited(status) => {
                tracing::info!(job = %self.id, ?status, "the guest's program ended");
                GuestExit::from(status).write(&self.dir)?;
                Some(frame::to_bytes(&HostMessage::Ack { upto: state.offset }))
            }
            GuestMessage::Error { message } => {
                tracing::warn!(job = %self.id, %message, "the guest reported an error");
                if GuestExit::read(&self.dir).is_none() {
                    GuestExit::Error(message).write(&self.dir)?;
                }
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_restart() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(State::load(d.path()), State::default());
        let s = State {
            run_sent: true,
            offset: 12345,
        };
        s.save(d.path()).unwrap();
        assert_eq!(State::load(d.path()), s);
    }

    /// The guest's end of a channel: frames out, host messages in.
    struct FakeGuest {
        sock: tokio::net::UnixStream,
        dec: Decoder<HostMessage>,
    }

    impl FakeGuest {
        async fn send(&mut self, m: &GuestMessage) {
            self.sock.write_all(&frame::to_bytes(m)).await.unwrap();
        }

        async fn next(&mut self) -> HostMessage {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(m) = self.dec.next_message().unwrap() {
                    return m;
                }
                let n = tokio::time::timeout(Duration::from_secs(5), self.sock.read(&mut buf))
                    .await
                    .expect("the host answers")
                    .unwrap();
                assert!(n > 0, "the host closed the channel");
                self.dec.feed(&buf[..n]);
            }
        }
    }

    fn output(offset: u64, data: &[u8]) -> GuestMessage {
        GuestMessage::Output {
            stream: colo_guest_agent::Stream::Stdout,
            offset,
            data: data.to_vec(),
        }
    }

    /// A link to a channel socket the test serves, with a `Run` frame in place.
    fn setup() -> (
        tempfile::TempDir,
        tokio::net::UnixListener,
        Arc<GuestLink>,
        Vec<u8>,
    ) {
        let d = tempfile::tempdir().unwrap();
        // Any frame stands for the job here.
        let run = frame::to_bytes(&HostMessage::Signal(3));
        std::fs::write(d.path().join(RUN_FILE), &run).unwrap();
        let listener = tokio::net::UnixListener::bind(d.path().join("ch.sock")).unwrap();
        let link = Arc::new(GuestLink::default());
        link.start("j", &d.path().join("ch.sock"), d.path(), 1 << 20);
        (d, listener, link, run)
    }

    async fn accept(l: &tokio::net::UnixListener) -> FakeGuest {
        FakeGuest {
            sock: l.accept().await.unwrap().0,
            dec: Decoder::new(),
        }
    }

    #[tokio::test]
    async fn the_host_speaks_after_ready_keeps_output_once_and_resumes_after_a_break() {
        let (d, listener, link, run) = setup();
        let mut g = accept(&listener).await;
        g.send(&GuestMessage::Ready { version: 1 }).await;
        // The first thing the host says is the job (nothing before `Ready`).
        assert_eq!(frame::to_bytes(&g.next().await), run);
        g.send(&output(0, b"one\n")).await;
        assert_eq!(g.next().await, HostMessage::Ack { upto: 4 });
        // The connection breaks; the host comes back asking for what it lacks.
        drop(g);
        let mut g = accept(&listener).await;
        assert_eq!(g.next().await, HostMessage::Resume { from: 4 });
        // Sent again, then new: kept once.
        g.send(&output(0, b"one\n")).await;
        assert_eq!(g.next().await, HostMessage::Ack { upto: 4 });
        g.send(&output(4, b"two\n")).await;
        assert_eq!(g.next().await, HostMessage::Ack { upto: 8 });
        assert!(link.signal(15));
        assert_eq!(g.next().await, HostMessage::Signal(15));
        g.send(&GuestMessage::Exited(colo_guest_agent::ExitStatus::Code(3)))
            .await;
        assert_eq!(g.next().await, HostMessage::Ack { upto: 8 });
        assert_eq!(
            std::fs::read(d.path().join(OUTPUT_FILE)).unwrap(),
            b"one\ntwo\n"
        );
        assert_eq!(GuestExit::read(d.path()), Some(GuestExit::Code(3)));
        link.stop();
        assert!(!link.signal(15));
    }

    #[tokio::test]
    async fn a_torn_frame_at_the_start_of_a_connection_means_connecting_again() {
        let (_d, listener, link, run) = setup();
        let mut g = accept(&listener).await;
        // The tail of a frame a torn channel left: not a frame header.
        g.sock.write_all(&[0x5e; 32]).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), g.sock.read(&mut buf))
            .await
            .expect("the host hangs up")
            .unwrap();
        assert_eq!(n, 0);
        let mut g = accept(&listener).await;
        g.send(&GuestMessage::Ready { version: 1 }).await;
        assert_eq!(frame::to_bytes(&g.next().await), run);
        link.stop();
    }

    #[tokio::test]
    async fn a_guest_breaking_the_protocol_is_dropped_with_the_cause() {
        let (d, listener, link, _) = setup();
        let mut g = accept(&listener).await;
        g.send(&GuestMessage::Ready { version: 1 }).await;
        g.next().await;
        // Output whose end overflows any offset.
        g.send(&output(u64::MAX - 1, b"xyz")).await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), g.sock.read(&mut buf))
            .await
            .expect("the host hangs up")
            .unwrap();
        assert_eq!(n, 0, "no Ack for it");
        let e = GuestExit::read(d.path());
        assert!(
            matches!(&e, Some(GuestExit::Error(m)) if m.contains("broke the channel protocol")),
            "{e:?}"
        );
        // It does not come back.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), listener.accept())
                .await
                .is_err()
        );
        link.stop();
    }

    #[test]
    fn output_rotates_at_half_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let mut o = OutputFile::new(d.path(), 256 * 1024);
        o.append(&[b'a'; 100 * 1024]).unwrap();
        o.append(&[b'b'; 100 * 1024]).unwrap();
        let older = colo_vmm::older_half(&d.path().join(OUTPUT_FILE));
        assert_eq!(std::fs::metadata(&older).unwrap().len(), 100 * 1024);
        assert_eq!(
            std::fs::read(d.path().join(OUTPUT_FILE)).unwrap(),
            vec![b'b'; 100 * 1024]
        );
    }
}
