//! One job's conversation with the host: announce the guest, take the job, forward its output
//! and signals, report how it ended, and wait (bounded) for the host to take the last output.
//!
//! A single-threaded `poll` loop over the channel, the job's two pipes and its pidfd. The pipes
//! are polled only while the output log has room (backpressure: the job blocks in `write`
//! rather than losing output). Control frames (`Ready`, `Exited`, `Error`) go out after all
//! output produced before them, so the host sees `Exited` only once it has every byte.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use colo_guest_agent::message::{MAX_OUTPUT_DATA, PROTOCOL_VERSION};
use colo_guest_agent::{ExitStatus, GuestMessage, HostMessage, RunSpec, Stream};

use crate::channel::{Channel, ChannelError};
use crate::child::{ChildError, Job, Reaper};
use crate::output_log::{OutputLog, OutputLogError};

/// How long pipes a finished job left open (to a background process) may stay quiet before
/// the guest stops reading them and reports the exit.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How often PID 1 wakes to reap orphans when nothing else happens.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Errors of the session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The job's process failed.
    #[error(transparent)]
    Child(#[from] ChildError),
    /// The host's acknowledgements do not match the output.
    #[error(transparent)]
    Output(#[from] OutputLogError),
    /// A second `Run` came.
    #[error("the host sent a second Run; a guest runs one job")]
    SecondRun,
    /// `poll` or a pipe read failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
}

/// The session state.
#[derive(Debug)]
pub struct Session {
    chan: Channel,
    log: OutputLog,
    reaper: Reaper,
    /// Control frames waiting for the output before them to go out.
    control: VecDeque<GuestMessage>,
    running: bool,
    exited: Option<ExitStatus>,
}

fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> Result<(), SessionError> {
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
    // SAFETY: `fds` is a valid slice of pollfd for the duration of the call.
    if unsafe { libc::poll(fds.as_mut_ptr(), n, ms) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(SessionError::Io {
                op: "poll",
                source: e,
            });
        }
    }
    Ok(())
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

const READY: i16 = libc::POLLIN | libc::POLLHUP | libc::POLLERR;

impl Session {
    /// A session over `chan`, holding at most `log_capacity` bytes of un-acknowledged output.
    pub fn new(chan: Channel, reaper: Reaper, log_capacity: usize) -> Self {
        Self {
            chan,
            log: OutputLog::new(log_capacity),
            reaper,
            control: VecDeque::new(),
            running: false,
            exited: None,
        }
    }

    /// Moves queued frames to the channel: the next output first, control frames once all
    /// output before them is out.
    fn fill_tx(&mut self) {
        if self.chan.wants_write() {
            return;
        }
        if let Some((stream, offset, data)) = self.log.next_unsent(MAX_OUTPUT_DATA) {
            let n = data.len();
            self.chan.queue(&GuestMessage::Output {
                stream,
                offset,
                data: data.to_vec(),
            });
            self.log.mark_sent(n);
        } else {
            while let Some(m) = self.control.pop_front() {
                self.chan.queue(&m);
            }
        }
    }

    /// Polls the channel (with `extra` descriptors after it) and handles what the host sent;
    /// returns a `Run` if one came.
    fn step(
        &mut self,
        extra: &mut [libc::pollfd],
        timeout: Option<Duration>,
        job: Option<&Job>,
    ) -> Result<Option<RunSpec>, SessionError> {
        self.fill_tx();
        let mut events = libc::POLLIN;
        if self.chan.wants_write() {
            events |= libc::POLLOUT;
        }
        let mut fds = Vec::with_capacity(1 + extra.len());
        fds.push(pollfd(self.chan.fd(), events));
        fds.extend_from_slice(extra);
        poll(&mut fds, timeout)?;
        extra.copy_from_slice(&fds[1..]);
        if fds[0].revents & libc::POLLOUT != 0 {
            self.chan.flush()?;
        }
        let mut run = None;
        if fds[0].revents & READY != 0 {
            for m in self.chan.receive()? {
                if let Some(spec) = self.on_message(m, job)? {
                    run = Some(spec);
                }
            }
        }
        // Try writing at once: most of the time the device takes it without a poll round.
        self.fill_tx();
        self.chan.flush()?;
        Ok(run)
    }

    fn on_message(
        &mut self,
        m: HostMessage,
        job: Option<&Job>,
    ) -> Result<Option<RunSpec>, SessionError> {
        match m {
            HostMessage::Run(spec) if !self.running => {
                self.running = true;
                return Ok(Some(spec));
            }
            HostMessage::Run(_) => return Err(SessionError::SecondRun),
            HostMessage::Signal(n) => {
                if let Some(job) = job.filter(|_| self.exited.is_none()) {
                    job.signal(n)?;
                }
            }
            HostMessage::Ack { upto } => self.log.ack(upto)?,
            HostMessage::Resume { from } => {
                self.log.resume(from)?;
                self.chan.discard_unwritten();
                self.control.clear();
                if !self.running {
                    self.control.push_back(GuestMessage::Ready {
                        version: PROTOCOL_VERSION,
                    });
                }
                if let Some(status) = self.exited {
                    self.control.push_back(GuestMessage::Exited(status));
                }
            }
        }
        Ok(None)
    }

    /// Announces the guest and waits for the job.
    pub fn wait_for_run(&mut self) -> Result<RunSpec, SessionError> {
        self.control.push_back(GuestMessage::Ready {
            version: PROTOCOL_VERSION,
        });
        loop {
            if let Some(spec) = self.step(&mut [], None, None)? {
                return Ok(spec);
            }
        }
    }

    /// Reads up to what the log has room for from one pipe; `false` at end of file.
    fn read_pipe(
        log: &mut OutputLog,
        pipe: &mut impl Read,
        stream: Stream,
    ) -> Result<bool, SessionError> {
        let mut buf = [0u8; MAX_OUTPUT_DATA];
        let room = log.space().min(buf.len());
        if room == 0 {
            // The other pipe filled the log in this round; a zero-length read would look like
            // end of file.
            return Ok(true);
        }
        match pipe.read(&mut buf[..room]) {
            Ok(0) => Ok(false),
            Ok(n) => {
                log.push(stream, &buf[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(true)
            }
            Err(source) => Err(SessionError::Io {
                op: "reading the job's output",
                source,
            }),
        }
    }

    /// Runs until the job has exited and its output is read, forwarding output and signals.
    /// Queues `Exited` behind the output and returns the status.
    pub fn supervise(&mut self, job: &mut Job) -> Result<ExitStatus, SessionError> {
        let mut last_output = Instant::now();
        let status = loop {
            let pipes_open = job.stdout.is_some() || job.stderr.is_some();
            if let Some(status) = job.status() {
                // A background process may hold the pipes: stop once they are quiet.
                let quiet = last_output.elapsed() >= DRAIN_GRACE && self.log.space() > 0;
                if !pipes_open || quiet {
                    job.stdout = None;
                    job.stderr = None;
                    break status;
                }
            }
            let room = self.log.space() > 0;
            let mut fds = [
                pollfd(
                    job.stdout
                        .as_ref()
                        .filter(|_| room)
                        .map_or(-1, |p| p.as_raw_fd()),
                    libc::POLLIN,
                ),
                pollfd(
                    job.stderr
                        .as_ref()
                        .filter(|_| room)
                        .map_or(-1, |p| p.as_raw_fd()),
                    libc::POLLIN,
                ),
                pollfd(
                    if job.status().is_none() {
                        job.pidfd.as_raw_fd()
                    } else {
                        -1
                    },
                    libc::POLLIN,
                ),
            ];
            let mut timeout = match self.reaper {
                Reaper::All => Some(REAP_INTERVAL),
                Reaper::Own => None,
            };
            if job.status().is_some() {
                timeout = Some(DRAIN_GRACE.saturating_sub(last_output.elapsed()));
            }
            self.step(&mut fds, timeout, Some(job))?;
            if fds[0].revents & READY != 0
                && let Some(p) = job.stdout.as_mut()
            {
                last_output = Instant::now();
                if !Self::read_pipe(&mut self.log, p, Stream::Stdout)? {
                    job.stdout = None;
                }
            }
            if fds[1].revents & READY != 0
                && let Some(p) = job.stderr.as_mut()
            {
                last_output = Instant::now();
                if !Self::read_pipe(&mut self.log, p, Stream::Stderr)? {
                    job.stderr = None;
                }
            }
            if fds[2].revents & READY != 0 || self.reaper == Reaper::All {
                job.reap(self.reaper)?;
                if job.status().is_some() && fds[2].revents & READY != 0 {
                    last_output = Instant::now();
                }
            }
        };
        self.exited = Some(status);
        self.control.push_back(GuestMessage::Exited(status));
        Ok(status)
    }

    /// Sends what is queued and waits until the host has acknowledged all output, at most
    /// `timeout`. Returns whether it did.
    pub fn finish(&mut self, timeout: Duration) -> Result<bool, SessionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let drained =
                !self.chan.wants_write() && self.control.is_empty() && self.log.unsent() == 0;
            if drained && self.log.all_acked() {
                return Ok(true);
            }
            if left.is_zero() {
                return Ok(false);
            }
            self.step(&mut [], Some(left), None)?;
        }
    }

    /// Sends `Error` (after any output still queued), waiting at most `timeout` for it to go out.
    pub fn report_error(&mut self, message: &str, timeout: Duration) {
        self.control.push_back(GuestMessage::error(message));
        let deadline = Instant::now() + timeout;
        while self.log.unsent() > 0 || !self.control.is_empty() || self.chan.wants_write() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.step(&mut [], Some(left), None).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
