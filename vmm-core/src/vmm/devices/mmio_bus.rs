//! The MMIO bus: which device answers a guest access to a physical address. vCPU threads look
//! the device up on every MMIO exit; queue notifications skip it (KVM ioeventfds).

use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

/// A device with a register window in guest physical memory.
pub trait MmioDevice: Send + Sync + std::fmt::Debug {
    /// A guest read of `data.len()` bytes at `offset` into the window.
    fn mmio_read(&self, offset: u64, data: &mut [u8]);
    /// A guest write at `offset` into the window (`mem` for devices that look at their queues).
    fn mmio_write(&self, offset: u64, data: &[u8], mem: &GuestMemoryMmap);
}

/// One device's window.
#[derive(Debug)]
struct Window {
    base: u64,
    size: u64,
    device: Arc<dyn MmioDevice>,
}

/// The register windows of a VM's MMIO devices.
#[derive(Debug, Default)]
pub struct MmioBus {
    windows: Vec<Window>,
}

impl MmioBus {
    /// Puts `device` at `base..base + size`.
    pub fn insert(&mut self, base: u64, size: u64, device: Arc<dyn MmioDevice>) {
        self.windows.push(Window { base, size, device });
    }

    fn device_at(&self, addr: u64) -> Option<(&dyn MmioDevice, u64)> {
        self.windows
            .iter()
            .find(|w| addr >= w.base && addr - w.base < w.size)
            .map(|w| (w.device.as_ref(), addr - w.base))
    }

    /// A guest read: the device's registers, or zeros outside any device.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.device_at(addr) {
            Some((device, offset)) => device.mmio_read(offset, data),
            None => data.fill(0),
        }
    }

    /// A guest write: the device's registers, or ignored outside any device.
    pub fn write(&self, addr: u64, data: &[u8], mem: &GuestMemoryMmap) {
        if let Some((device, offset)) = self.device_at(addr) {
            device.mmio_write(offset, data, mem);
        }
    }
}
