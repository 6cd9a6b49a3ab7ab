//! Server streams: WatchJob (state changes and serial lines) and GetJobLogs (file contents).
//! Files are followed by polling their size every 100 ms, and only while someone watches.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use colo_proto::agent as pb;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use super::convert;
use crate::jobs::{JobManager, JobRecord, ManagerError};

/// The WatchJob stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, tonic::Status>> + Send>>;
/// The GetJobLogs stream.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, tonic::Status>> + Send>>;

const POLL: Duration = Duration::from_millis(100);
const CHUNK: usize = 64 * 1024;

/// Reads what a file gained since `offset`.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    async fn read_new(&mut self) -> Vec<u8> {
        // The sandbox owns the directory: never follow a link it put there.
        let path = self.path.clone();
        let opened = tokio::task::spawn_blocking(move || colo_vmm::open_untrusted(&path)).await;
        let Ok(Ok(f)) = opened else {
            return Vec::new();
        };
        let mut f = tokio::fs::File::from_std(f);
        // Rotated under `offline.log_limit` (a new, shorter file): start it from its beginning.
        if f.metadata().await.is_ok_and(|m| m.len() < self.offset) {
            self.offset = 0;
        }
        if f.seek(std::io::SeekFrom::Start(self.offset)).await.is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let mut limited = (&mut f).take(16 * CHUNK as u64);
        if limited.read_to_end(&mut buf).await.is_ok() {
            self.offset += buf.len() as u64;
        }
        buf
    }
}

fn state_event(r: &JobRecord) -> pb::JobEvent {
    pb::JobEvent {
        event: Some(pb::job_event::Event::State(convert::job(r, None))),
    }
}

/// Streams the job's state now and after every change, and its serial lines when `serial`;
/// ends after the job's final state (and the rest of its serial output).
pub fn watch(jobs: &JobManager, id: &str, serial: bool) -> Result<EventStream, ManagerError> {
    let (first, mut rx) = jobs.watch(id)?;
    let (tx, out) = mpsc::channel::<Result<pb::JobEvent, tonic::Status>>(64);
    let mut tail = serial.then(|| Tail {
        path: jobs.paths(id).serial,
        offset: 0,
    });
    let jobs = jobs.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let mut partial: Vec<u8> = Vec::new();
        let send_lines =
            |bytes: Vec<u8>, partial: &mut Vec<u8>, flush: bool| -> Vec<pb::JobEvent> {
                partial.extend(bytes);
                let mut events = Vec::new();
                while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=i).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                    events.push(pb::JobEvent {
                        event: Some(pb::job_event::Event::SerialLine(
                            text.trim_end_matches('\r').to_string(),
                        )),
                    });
                }
                if flush && !partial.is_empty() {
                    let text = String::from_utf8_lossy(partial).to_string();
                    partial.clear();
                    events.push(pb::JobEvent {
                        event: Some(pb::job_event::Event::SerialLine(text)),
                    });
                }
                events
            };
        let mut last = first.clone();
        if tx.send(Ok(state_event(&first))).await.is_err() {
            return;
        }
        let mut done = first.state.is_terminal();
        let mut tick = tokio::time::interval(POLL);
        loop {
            if let Some(t) = tail.as_mut() {
                let new = t.read_new().await;
                for ev in send_lines(new, &mut partial, done) {
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
            }
            if done {
                return;
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(rec) => {
                        done = rec.state.is_terminal();
                        last = rec.clone();
                        if done && tail.is_some() {
                            // Serial output first, then the final state.
                            if let Some(t) = tail.as_mut() {
                                let new = t.read_new().await;
                                for ev in send_lines(new, &mut partial, true) {
                                    if tx.send(Ok(ev)).await.is_err() { return; }
                                }
                            }
                        }
                        if tx.send(Ok(state_event(&rec))).await.is_err() { return; }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some snapshots: send the current one.
                        if let Ok(rec) = jobs.get(&id) && rec != last {
                            done = rec.state.is_terminal();
                            last = rec.clone();
                            if tx.send(Ok(state_event(&rec))).await.is_err() { return; }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        // The job was forgotten or the agent is stopping.
                        return;
                    }
                },
                _ = tick.tick(), if tail.is_some() => {}
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(out)))
}

/// Streams a log file from its start; with `follow`, keeps streaming until the job has ended.
pub fn logs(
    jobs: &JobManager,
    id: &str,
    source: pb::LogSource,
    follow: bool,
) -> Result<LogStream, ManagerError> {
    let (_, mut rx) = jobs.watch(id)?;
    let paths = jobs.paths(id);
    let program = jobs
        .get(id)
        .is_ok_and(|r| crate::jobs::runtime::linux::program(&r.spec).is_some());
    let files = match (source, program) {
        // The older half of a log rotated under `offline.log_limit` comes first.
        (pb::LogSource::Serial, false) => vec![colo_vmm::older_half(&paths.serial), paths.serial],
        (pb::LogSource::Vmm, false) => {
            vec![paths.output, colo_vmm::older_half(&paths.log), paths.log]
        }
        // A Linux guest's program: its output, as its in-guest agent sent it; the guest's
        // console goes with the VMM's files.
        (pb::LogSource::Serial, true) => {
            let out = paths
                .guest
                .join(crate::jobs::runtime::linux::session::OUTPUT_FILE);
            vec![colo_vmm::older_half(&out), out]
        }
        (pb::LogSource::Vmm, true) => vec![
            paths.output,
            colo_vmm::older_half(&paths.log),
            paths.log,
            colo_vmm::older_half(&paths.serial),
            paths.serial,
        ],
    };
    let (tx, out) = mpsc::channel::<Result<pb::LogChunk, tonic::Status>>(16);
    let jobs = jobs.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let last = files.len() - 1;
        for (i, path) in files.into_iter().enumerate() {
            let mut tail = Tail { path, offset: 0 };
            loop {
                // Checked before reading: once ended, the VMM writes nothing more, so an empty
                // read after that means everything was sent.
                let ended = jobs.get(&id).map(|r| r.state.is_terminal()).unwrap_or(true);
                let data = tail.read_new().await;
                let empty = data.is_empty();
                for c in data.chunks(CHUNK) {
                    if tx
                        .send(Ok(pb::LogChunk { data: c.to_vec() }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                // Only the last file is followed.
                if !follow || i != last || (ended && empty) {
                    break;
                }
                if !empty {
                    continue;
                }
                tokio::select! {
                    _ = rx.recv() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(out)))
}
