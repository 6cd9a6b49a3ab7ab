//! COM1: vm-superio's 16550 writing to stdout or a file, one write per guest exit, bounded by
//! `--log-limit` (see `capped_output.rs`): a guest cannot fill the host's disk through it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use vm_superio::serial::NoEvents;
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::capped_output::{CappedFile, StreamBudget};

/// Where the guest's serial output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialTarget {
    /// The VMM's stdout.
    Stdout,
    /// A file, created if missing and appended to (rotated to `PATH.1` under a limit).
    File(PathBuf),
}

/// Interrupt line of the UART: an eventfd registered as KVM irqfd (or none).
#[derive(Debug)]
pub struct SerialIrq(Option<EventFd>);

impl vm_superio::Trigger for SerialIrq {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        match &self.0 {
            Some(e) => e.write(1),
            None => Ok(()),
        }
    }
}

/// Collects the bytes of one exit; [`Serial::commit`] writes them with one system call.
#[derive(Debug)]
pub struct SerialSink {
    out: Output,
    pending: Vec<u8>,
}

/// Where committed bytes go, with what bounds them.
#[derive(Debug)]
enum Output {
    File(CappedFile),
    Stdout(StreamBudget),
}

impl Write for SerialSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SerialSink {
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // A reader that went away (closed pipe, full disk) must not stop the guest: output that
        // cannot be written is dropped.
        let _ = match &mut self.out {
            Output::File(f) => f.write(&self.pending),
            Output::Stdout(budget) if budget.admit(self.pending.len()) => {
                std::io::stdout().lock().write_all(&self.pending)
            }
            Output::Stdout(_) => Ok(()),
        };
        self.pending.clear();
    }
}

/// The UART and its sink.
#[derive(Debug)]
pub struct Serial {
    uart: vm_superio::Serial<SerialIrq, NoEvents, SerialSink>,
}

impl Serial {
    /// A UART writing to `target`, raising `irq` (if any) for the guest; `limit` bounds what
    /// `target` holds (a file) or receives (stdout).
    pub fn new(
        target: SerialTarget,
        irq: Option<EventFd>,
        limit: Option<u64>,
    ) -> std::io::Result<Self> {
        let out = match target {
            SerialTarget::Stdout => Output::Stdout(StreamBudget::new(limit)),
            SerialTarget::File(p) => Output::File(CappedFile::open(&p, limit)?),
        };
        let sink = SerialSink {
            out,
            pending: Vec::with_capacity(256),
        };
        Ok(Self {
            uart: vm_superio::Serial::new(SerialIrq(irq), sink),
        })
    }

    /// A register write at `offset` from the base port.
    pub fn write(&mut self, offset: u8, value: u8) {
        // Errors here are a lost interrupt or a lost byte; neither may stop the guest.
        let _ = self.uart.write(offset, value);
    }

    /// A register read at `offset` from the base port.
    pub fn read(&mut self, offset: u8) -> u8 {
        self.uart.read(offset)
    }

    /// Writes the bytes collected since the last commit.
    pub fn commit(&mut self) {
        self.uart.writer_mut().commit();
    }

    /// The count of output bytes dropped to stay within the limit.
    pub fn dropped_counter(&mut self) -> Arc<AtomicU64> {
        match &self.uart.writer_mut().out {
            Output::File(f) => f.dropped_counter(),
            Output::Stdout(b) => b.dropped_counter(),
        }
    }
}
