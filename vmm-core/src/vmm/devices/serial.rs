//! COM1: vm-superio's 16550 writing to stdout or a file, one write per guest exit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use vm_superio::serial::NoEvents;
use vmm_sys_util::eventfd::EventFd;

/// Where the guest's serial output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialTarget {
    /// The VMM's stdout.
    Stdout,
    /// A file, created if missing and appended to.
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
    file: Option<File>,
    pending: Vec<u8>,
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
        let _ = match &mut self.file {
            Some(f) => f.write_all(&self.pending),
            None => std::io::stdout().lock().write_all(&self.pending),
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
    /// A UART writing to `target`, raising `irq` (if any) for the guest.
    pub fn new(target: SerialTarget, irq: Option<EventFd>) -> std::io::Result<Self> {
        let file = match target {
            SerialTarget::Stdout => None,
            SerialTarget::File(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
        };
        let sink = SerialSink {
            file,
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
}
