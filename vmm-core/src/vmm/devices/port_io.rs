//! The port-I/O bus: COM1 (16550, vm-superio, in `serial/`), the i8042 reset line and the
//! debug-exit port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vm_superio::{I8042Device, Trigger};

use super::serial::Serial;
use crate::vmm::outcome::Outcome;

/// First port of COM1.
pub const COM1: u16 = 0x3f8;
/// The i8042 data port; its command port is 4 above.
pub const I8042_BASE: u16 = 0x60;
/// QEMU's isa-debug-exit port: the value written ends the VM with that exit code.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Sets a flag when the guest asks the i8042 for a CPU reset.
#[derive(Debug, Default, Clone)]
pub struct ResetFlag(Arc<AtomicBool>);

impl Trigger for ResetFlag {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// The devices behind port I/O exits.
#[derive(Debug)]
pub struct PortDevices {
    serial: Serial,
    i8042: I8042Device<ResetFlag>,
    reset: ResetFlag,
}

impl PortDevices {
    /// Devices with COM1 writing to `serial`.
    pub fn new(serial: Serial) -> Self {
        let reset = ResetFlag::default();
        Self {
            serial,
            i8042: I8042Device::new(reset.clone()),
            reset,
        }
    }

    /// The guest wrote `data` to `port` (`data` holds every byte of a `rep outs`).
    pub fn io_out(&mut self, port: u16, data: &[u8]) -> Option<Outcome> {
        match port {
            COM1..=0x3ff => {
                let offset = (port - COM1) as u8;
                for b in data {
                    self.serial.write(offset, *b);
                }
                self.serial.commit();
                None
            }
            I8042_BASE | 0x64 => {
                for b in data {
                    // The i8042 model cannot fail: its trigger is infallible.
                    let _ = self.i8042.write((port - I8042_BASE) as u8, *b);
                }
                if self.reset.0.load(Ordering::SeqCst) {
                    return Some(Outcome::guest_reset("i8042 reset command"));
                }
                None
            }
            DEBUG_EXIT_PORT => {
                let mut v = [0u8; 4];
                let n = data.len().min(4);
                v[..n].copy_from_slice(&data[..n]);
                Some(Outcome::guest_exit(u32::from_le_bytes(v)))
            }
            _ => None,
        }
    }

    /// The guest reads `data.len()` bytes from `port`; absent devices read as all ones.
    pub fn io_in(&mut self, port: u16, data: &mut [u8]) {
        match port {
            COM1..=0x3ff => {
                let offset = (port - COM1) as u8;
                for b in data.iter_mut() {
                    *b = self.serial.read(offset);
                }
            }
            I8042_BASE | 0x64 => {
                for b in data.iter_mut() {
                    *b = self.i8042.read((port - I8042_BASE) as u8);
                }
            }
            _ => data.fill(0xff),
        }
    }

    /// Writes out any buffered serial output.
    pub fn flush(&mut self) {
        self.serial.commit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::serial::SerialTarget;

    fn devices() -> (PortDevices, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let serial = Serial::new(SerialTarget::File(dir.path().join("s")), None, None).unwrap();
        (PortDevices::new(serial), dir)
    }

    #[test]
    fn ports_do_what_the_guest_expects() {
        let (mut d, dir) = devices();
        assert_eq!(d.io_out(COM1, b"hello\n"), None);
        assert_eq!(std::fs::read(dir.path().join("s")).unwrap(), b"hello\n");
        assert_eq!(d.io_out(DEBUG_EXIT_PORT, &[3]).unwrap().exit_code, 3);
        assert_eq!(d.io_out(0x64, &[0x00]), None);
        assert_eq!(
            d.io_out(0x64, &[0xfe]).unwrap().reason,
            crate::ExitReason::GuestReset
        );
        let mut b = [0u8; 2];
        d.io_in(0x2f8, &mut b);
        assert_eq!(b, [0xff, 0xff]);
    }
}
