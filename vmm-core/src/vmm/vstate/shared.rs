//! State shared by the vCPU threads and the VMM's main thread.

use std::sync::{Mutex, MutexGuard};

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::vcpu::ExitCounters;
use crate::vmm::devices::PortDevices;
use crate::vmm::devices::mmio_bus::MmioBus;
use crate::vmm::outcome::Outcome;

/// Devices, exit counters and the VM's end.
#[derive(Debug)]
pub struct VmShared {
    devices: Mutex<PortDevices>,
    /// KVM exits handled by the VMM.
    pub exits: ExitCounters,
    end: Mutex<Option<Outcome>>,
    end_event: EventFd,
    mmio: MmioBus,
    mem: GuestMemoryMmap,
}

impl VmShared {
    /// Shared state around the port devices and the MMIO devices of guest `mem`.
    pub fn new(devices: PortDevices, mmio: MmioBus, mem: GuestMemoryMmap) -> std::io::Result<Self> {
        Ok(Self {
            devices: Mutex::new(devices),
            exits: ExitCounters::default(),
            end: Mutex::new(None),
            end_event: EventFd::new(libc::EFD_NONBLOCK)?,
            mmio,
            mem,
        })
    }

    /// The port-I/O devices (a panicked holder does not poison them for the others).
    pub fn devices(&self) -> MutexGuard<'_, PortDevices> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records how the VM ends (the first outcome wins) and wakes the main thread.
    pub fn finish(&self, outcome: Outcome) {
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        if end.is_none() {
            *end = Some(outcome);
        }
        drop(end);
        let _ = self.end_event.write(1);
    }

    /// How the VM ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The eventfd that becomes readable when the VM ends.
    pub fn end_event(&self) -> &EventFd {
        &self.end_event
    }

    /// An MMIO read: a device's registers, or zeros outside any device.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        self.mmio.read(addr, data);
    }

    /// An MMIO write: a device's registers, or ignored outside any device.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        self.mmio.write(addr, data, &self.mem);
    }
}
