//! The job's output that the host has not acknowledged yet, in read order, with stdout and
//! stderr interleaved as they came.
//!
//! Offsets count bytes of both streams together from the job's start. Three marks move forward
//! only (`acked <= sent <= end`), except that a host that reconnects may move `sent` back to any
//! offset it still lacks (`Resume`). The log holds at most its capacity: when it is full the
//! caller stops reading the job's pipes, so the job blocks on write (backpressure) and no byte
//! is dropped.

use std::collections::VecDeque;

use colo_guest_agent::Stream;

/// Errors of acknowledgements and resumptions from the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputLogError {
    /// The host acknowledged output the guest never produced.
    #[error(
        "host acknowledged output up to offset {upto}, but the job has produced only {end} bytes"
    )]
    AckBeyondEnd {
        /// The acknowledged offset.
        upto: u64,
        /// The end of the output.
        end: u64,
    },
    /// The host asked to resume from an offset outside what the guest still holds.
    #[error("host asked for output from offset {from}, but the guest holds only {acked}..{end}")]
    ResumeOutOfRange {
        /// The requested offset.
        from: u64,
        /// The first offset still held.
        acked: u64,
        /// The end of the output.
        end: u64,
    },
}

/// One read from one stream.
#[derive(Debug)]
struct Chunk {
    stream: Stream,
    /// Offset of `data[0]`.
    offset: u64,
    data: Vec<u8>,
}

/// The bounded log of un-acknowledged output.
#[derive(Debug)]
pub struct OutputLog {
    chunks: VecDeque<Chunk>,
    capacity: usize,
    /// Bytes held (from `acked` to `end`).
    held: usize,
    acked: u64,
    sent: u64,
    end: u64,
}

impl OutputLog {
    /// An empty log holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            capacity,
            held: 0,
            acked: 0,
            sent: 0,
            end: 0,
        }
    }

    /// Bytes that can be added now.
    pub fn space(&self) -> usize {
        self.capacity - self.held
    }

    /// Bytes produced but not yet sent.
    pub fn unsent(&self) -> u64 {
        self.end - self.sent
    }

    /// Whether the host has acknowledged everything produced.
    pub fn all_acked(&self) -> bool {
        self.acked == self.end
    }

    /// Appends bytes read from `stream`; at most [`OutputLog::space`] of them are taken (the
    /// caller reads no more than that). Returns how many were taken.
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.space());
        if n == 0 {
            return 0;
        }
        let bytes = &bytes[..n];
        match self.chunks.back_mut() {
            // Small reads of one stream merge, so a chatty job does not make many tiny frames.
            Some(last) if last.stream == stream => last.data.extend_from_slice(bytes),
            _ => self.chunks.push_back(Chunk {
                stream,
                offset: self.end,
                data: bytes.to_vec(),
            }),
        }
        self.held += n;
        self.end += n as u64;
        n
    }

    /// The next bytes to send, at most `max` of them, from one stream: `(stream, offset, data)`.
    /// They count as sent once [`OutputLog::mark_sent`] says so.
    pub fn next_unsent(&self, max: usize) -> Option<(Stream, u64, &[u8])> {
        if self.sent == self.end {
            return None;
        }
        let chunk = self
            .chunks
            .iter()
            .find(|c| c.offset + c.data.len() as u64 > self.sent)?;
        let skip = usize::try_from(self.sent - chunk.offset).ok()?;
        let data = &chunk.data[skip..];
        Some((chunk.stream, self.sent, &data[..data.len().min(max)]))
    }

    /// Records that `n` more bytes went out.
    pub fn mark_sent(&mut self, n: usize) {
        self.sent = (self.sent + n as u64).min(self.end);
    }

    /// The host kept everything before `upto`: forget it. An offset behind an earlier
    /// acknowledgement is stale and changes nothing.
    pub fn ack(&mut self, upto: u64) -> Result<(), OutputLogError> {
        if upto > self.end {
            return Err(OutputLogError::AckBeyondEnd {
                upto,
                end: self.end,
            });
        }
        if upto <= self.acked {
            return Ok(());
        }
        while let Some(front) = self.chunks.front_mut() {
            let chunk_end = front.offset + front.data.len() as u64;
            if chunk_end <= upto {
                self.held -= front.data.len();
                self.chunks.pop_front();
                continue;
            }
            if front.offset < upto {
                let cut = usize::try_from(upto - front.offset).unwrap_or(front.data.len());
                front.data.drain(..cut);
                front.offset = upto;
                self.held -= cut;
            }
            break;
        }
        self.acked = upto;
        // The host may acknowledge what a previous connection sent and this one has not.
        self.sent = self.sent.max(upto);
        Ok(())
    }

    /// A reconnected host lacks everything from `from` on: send it again.
    pub fn resume(&mut self, from: u64) -> Result<(), OutputLogError> {
        if from < self.acked || from > self.end {
            return Err(OutputLogError::ResumeOutOfRange {
                from,
                acked: self.acked,
                end: self.end,
            });
        }
        self.sent = from;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
