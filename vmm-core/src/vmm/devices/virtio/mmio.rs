//! The virtio-mmio transport, version 2 (virtio 1.x §4.2.2), for a device with a fixed number of
//! queues (one for virtio-blk, two for virtio-console), all of which the driver must set up.
//!
//! Guest register accesses arrive on vCPU threads (MMIO exits); queue notifications bypass this
//! code through an ioeventfd. The IO thread reads the queue under the same lock.

use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{F_VERSION_1, INT_CONFIG, status};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4f4c_4f43; // "COLO"

/// Register offsets (the driver area is the available ring, the device area the used ring).
mod reg {
    use virtio_bindings::virtio_mmio as m;

    pub const MAGIC: u64 = m::VIRTIO_MMIO_MAGIC_VALUE as u64;
    pub const VERSION: u64 = m::VIRTIO_MMIO_VERSION as u64;
    pub const DEVICE_ID: u64 = m::VIRTIO_MMIO_DEVICE_ID as u64;
    pub const VENDOR_ID: u64 = m::VIRTIO_MMIO_VENDOR_ID as u64;
    pub const DEVICE_FEATURES: u64 = m::VIRTIO_MMIO_DEVICE_FEATURES as u64;
    pub const DEVICE_FEATURES_SEL: u64 = m::VIRTIO_MMIO_DEVICE_FEATURES_SEL as u64;
    pub const DRIVER_FEATURES: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES as u64;
    pub const DRIVER_FEATURES_SEL: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES_SEL as u64;
    pub const QUEUE_SEL: u64 = m::VIRTIO_MMIO_QUEUE_SEL as u64;
    pub const QUEUE_NUM_MAX: u64 = m::VIRTIO_MMIO_QUEUE_NUM_MAX as u64;
    pub const QUEUE_NUM: u64 = m::VIRTIO_MMIO_QUEUE_NUM as u64;
    pub const QUEUE_READY: u64 = m::VIRTIO_MMIO_QUEUE_READY as u64;
    pub const QUEUE_NOTIFY: u64 = m::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
    pub const INTERRUPT_STATUS: u64 = m::VIRTIO_MMIO_INTERRUPT_STATUS as u64;
    pub const INTERRUPT_ACK: u64 = m::VIRTIO_MMIO_INTERRUPT_ACK as u64;
    pub const STATUS: u64 = m::VIRTIO_MMIO_STATUS as u64;
    pub const QUEUE_DESC_LOW: u64 = m::VIRTIO_MMIO_QUEUE_DESC_LOW as u64;
    pub const QUEUE_DESC_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_DESC_HIGH as u64;
    pub const QUEUE_DRIVER_LOW: u64 = m::VIRTIO_MMIO_QUEUE_AVAIL_LOW as u64;
    pub const QUEUE_DRIVER_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_AVAIL_HIGH as u64;
    pub const QUEUE_DEVICE_LOW: u64 = m::VIRTIO_MMIO_QUEUE_USED_LOW as u64;
    pub const QUEUE_DEVICE_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_USED_HIGH as u64;
    pub const CONFIG_GENERATION: u64 = m::VIRTIO_MMIO_CONFIG_GENERATION as u64;
    pub const CONFIG: u64 = m::VIRTIO_MMIO_CONFIG as u64;
}

/// Offset of the queue-notify register (where the ioeventfd listens).
pub const QUEUE_NOTIFY_OFFSET: u64 = reg::QUEUE_NOTIFY;

/// What a register write asks the VMM to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioEffect {
    /// Nothing.
    None,
    /// The queue was notified through an exit (not the ioeventfd): process it.
    Notify,
    /// The driver set DRIVER_OK: the device may run.
    Activated,
    /// The device was reset: drop what is in flight.
    Reset,
    /// The driver gave the device something it cannot use (e.g. a queue outside guest memory);
    /// DEVICE_NEEDS_RESET is set and a configuration interrupt is due.
    NeedsReset,
}

/// Register state of one virtio-mmio device.
#[derive(Debug)]
pub struct MmioTransport {
    device_id: u32,
    device_features: u64,
    config: Vec<u8>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    /// Interrupt status bits, also set by the IO thread.
    pub interrupt_status: AtomicU32,
    queue_sel: u32,
    /// The device's queues, by index.
    pub queues: Vec<Queue>,
    /// Bumped at every reset, so completions of requests from before it are dropped.
    pub generation: u64,
}

impl MmioTransport {
    /// A transport for device type `device_id` offering `features` (VERSION_1 is added), with
    /// configuration space `config` and `queues` queues of at most `queue_max` entries each.
    pub fn new(
        device_id: u32,
        features: u64,
        config: Vec<u8>,
        queue_max: u16,
        queues: usize,
    ) -> Self {
        // A power of two up to 32768 is always accepted.
        let new_queue = || Queue::new(queue_max).unwrap_or_else(|_| Queue::new(256).expect("256"));
        Self {
            device_id,
            device_features: features | F_VERSION_1,
            config,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: AtomicU32::new(0),
            queue_sel: 0,
            queues: (0..queues.max(1)).map(|_| new_queue()).collect(),
            generation: 0,
        }
    }

    /// Whether the driver finished setting up and every queue is usable.
    pub fn is_active(&self) -> bool {
        self.status & status::DRIVER_OK != 0
            && self.status & status::DEVICE_NEEDS_RESET == 0
            && self.all_ready()
    }

    fn all_ready(&self) -> bool {
        self.queues.iter().all(|q| q.ready())
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    /// Marks the device as needing a reset (bad guest input) and raises a config interrupt.
    pub fn set_needs_reset(&mut self) {
        self.status |= status::DEVICE_NEEDS_RESET;
        self.interrupt_status.fetch_or(INT_CONFIG, Ordering::SeqCst);
    }

    /// A register read of `data.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            let start = (offset - reg::CONFIG) as usize;
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.config.get(start + i).copied().unwrap_or(0);
            }
            return;
        }
        let value = match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device_id,
            reg::VENDOR_ID => VENDOR,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features as u32,
                1 => (self.device_features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status.load(Ordering::SeqCst),
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    /// A register write at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8], mem: &GuestMemoryMmap) -> MmioEffect {
        if offset >= reg::CONFIG {
            // The configuration spaces offered (block, console) are read-only.
            return MmioEffect::None;
        }
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(bytes);
        // Queue registers may only change while the queue is not ready and before DRIVER_OK.
        let driver_ok = self.status & status::DRIVER_OK != 0;
        let sel = self.queue_sel as usize;
        let queue_setup = !driver_ok && self.queues.get(sel).is_some_and(|q| !q.ready());
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES if self.status & status::FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                    }
                    _ => {}
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM if queue_setup => self.queues[sel].set_size(v as u16),
            reg::QUEUE_DESC_LOW if queue_setup => {
                self.queues[sel].set_desc_table_address(Some(v), None)
            }
            reg::QUEUE_DESC_HIGH if queue_setup => {
                self.queues[sel].set_desc_table_address(None, Some(v))
            }
            reg::QUEUE_DRIVER_LOW if queue_setup => {
                self.queues[sel].set_avail_ring_address(Some(v), None)
            }
            reg::QUEUE_DRIVER_HIGH if queue_setup => {
                self.queues[sel].set_avail_ring_address(None, Some(v))
            }
            reg::QUEUE_DEVICE_LOW if queue_setup => {
                self.queues[sel].set_used_ring_address(Some(v), None)
            }
            reg::QUEUE_DEVICE_HIGH if queue_setup => {
                self.queues[sel].set_used_ring_address(None, Some(v))
            }
            reg::QUEUE_READY if sel < self.queues.len() => {
                let q = &mut self.queues[sel];
                if v == 1 {
                    // `is_valid` also checks the ready flag, so set it first.
                    q.set_ready(true);
                    if !q.is_valid(mem) {
                        q.set_ready(false);
                        self.set_needs_reset();
                        return MmioEffect::NeedsReset;
                    }
                } else {
                    q.set_ready(false);
                }
            }
            reg::QUEUE_NOTIFY => return MmioEffect::Notify,
            reg::INTERRUPT_ACK => {
                self.interrupt_status.fetch_and(!v, Ordering::SeqCst);
            }
            reg::STATUS => return self.write_status(v),
            _ => {}
        }
        MmioEffect::None
    }

    fn write_status(&mut self, v: u32) -> MmioEffect {
        if v == 0 {
            self.reset();
            return MmioEffect::Reset;
        }
        let mut v = v;
        // FEATURES_OK only sticks when the driver accepted a subset of ours including VERSION_1.
        if v & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let ok = self.driver_features & !self.device_features == 0
                && self.driver_features & F_VERSION_1 != 0;
            if !ok {
                v &= !status::FEATURES_OK;
            }
        }
        let was_ok = self.status & status::DRIVER_OK != 0;
        // The device owns NEEDS_RESET; the driver cannot clear it without a reset.
        self.status = v | (self.status & status::DEVICE_NEEDS_RESET);
        if !was_ok && self.status & status::DRIVER_OK != 0 {
            if self.status & status::FEATURES_OK == 0 || !self.all_ready() {
                self.set_needs_reset();
                return MmioEffect::NeedsReset;
            }
            return MmioEffect::Activated;
        }
        MmioEffect::None
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.device_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status.store(0, Ordering::SeqCst);
        for q in &mut self.queues {
            q.reset();
        }
        self.generation = self.generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn r(t: &MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32, m: &GuestMemoryMmap) -> MmioEffect {
        t.write(off, &v.to_le_bytes(), m)
    }

    /// Drives the device through the driver's init sequence with the queue at `desc`.
    fn init(t: &mut MmioTransport, m: &GuestMemoryMmap, desc: u64) -> MmioEffect {
        w(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER, m);
        w(t, reg::DRIVER_FEATURES_SEL, 1, m);
        w(t, reg::DRIVER_FEATURES, 1, m);
        w(t, reg::STATUS, 0xb, m);
        assert_ne!(r(t, reg::STATUS) & status::FEATURES_OK, 0);
        w(t, reg::QUEUE_NUM, 16, m);
        w(t, reg::QUEUE_DESC_LOW, desc as u32, m);
        w(t, reg::QUEUE_DESC_HIGH, (desc >> 32) as u32, m);
        w(t, reg::QUEUE_DRIVER_LOW, 0x2000, m);
        w(t, reg::QUEUE_DEVICE_LOW, 0x3000, m);
        let e = w(t, reg::QUEUE_READY, 1, m);
        if e != MmioEffect::None {
            return e;
        }
        w(t, reg::STATUS, 0xf, m)
    }

    #[test]
    fn identifies_as_a_modern_virtio_mmio_device() {
        let t = MmioTransport::new(2, 1 << 9, vec![1, 2, 3], 256, 1);
        assert_eq!(r(&t, reg::MAGIC), MAGIC);
        assert_eq!(r(&t, reg::VERSION), 2);
        assert_eq!(r(&t, reg::DEVICE_ID), 2);
        assert_eq!(r(&t, reg::DEVICE_FEATURES), 1 << 9);
        assert_eq!(r(&t, reg::QUEUE_NUM_MAX), 256);
        assert_eq!(r(&t, reg::CONFIG) & 0xff_ffff, 0x03_0201);
    }

    #[test]
    fn init_sequence_activates_and_reset_clears() {
        let m = mem();
        let mut t = MmioTransport::new(2, 0, vec![], 256, 1);
        assert_eq!(init(&mut t, &m, 0x1000), MmioEffect::Activated);
        assert!(t.is_active());
        assert_eq!(w(&mut t, reg::STATUS, 0, &m), MmioEffect::Reset);
        assert!(!t.is_active());
        assert_eq!(t.generation, 1);
        assert_eq!(r(&t, reg::STATUS), 0);
    }

    #[test]
    fn features_without_version_1_are_refused() {
        let m = mem();
        let mut t = MmioTransport::new(2, 0, vec![], 256, 1);
        w(&mut t, reg::STATUS, 3, &m);
        w(&mut t, reg::STATUS, 0xb, &m);
        assert_eq!(r(&t, reg::STATUS) & status::FEATURES_OK, 0);
    }

    #[test]
    fn each_queue_is_set_up_on_its_own_and_all_are_needed() {
        let m = mem();
        let mut t = MmioTransport::new(3, 0, vec![], 64, 2);
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER,
            &m,
        );
        w(&mut t, reg::DRIVER_FEATURES_SEL, 1, &m);
        w(&mut t, reg::DRIVER_FEATURES, 1, &m);
        w(&mut t, reg::STATUS, 0xb, &m);
        for (q, base) in [(0u32, 0x10000u32), (1, 0x20000)] {
            w(&mut t, reg::QUEUE_SEL, q, &m);
            assert_eq!(r(&t, reg::QUEUE_NUM_MAX), 64);
            w(&mut t, reg::QUEUE_NUM, 8, &m);
            w(&mut t, reg::QUEUE_DESC_LOW, base, &m);
            w(&mut t, reg::QUEUE_DRIVER_LOW, base + 0x1000, &m);
            w(&mut t, reg::QUEUE_DEVICE_LOW, base + 0x2000, &m);
        }
        // Only queue 0 ready: DRIVER_OK does not activate the device.
        w(&mut t, reg::QUEUE_SEL, 0, &m);
        assert_eq!(w(&mut t, reg::QUEUE_READY, 1, &m), MmioEffect::None);
        w(&mut t, reg::QUEUE_SEL, 2, &m);
        assert_eq!(r(&t, reg::QUEUE_NUM_MAX), 0, "no third queue");
        assert_eq!(w(&mut t, reg::QUEUE_READY, 1, &m), MmioEffect::None);
        w(&mut t, reg::QUEUE_SEL, 1, &m);
        assert_eq!(r(&t, reg::QUEUE_READY), 0);
        w(&mut t, reg::QUEUE_READY, 1, &m);
        assert_eq!(w(&mut t, reg::STATUS, 0xf, &m), MmioEffect::Activated);
        assert_eq!(t.queues[0].desc_table(), 0x10000);
        assert_eq!(t.queues[1].desc_table(), 0x20000);
        assert!(t.is_active());
        // A ready queue can no longer be moved.
        w(&mut t, reg::QUEUE_DESC_LOW, 0x30000, &m);
        assert_eq!(t.queues[1].desc_table(), 0x20000);
        w(&mut t, reg::STATUS, 0, &m);
        assert!(t.queues.iter().all(|q| !q.ready()));
    }

    #[test]
    fn driver_ok_with_a_queue_missing_needs_a_reset() {
        let m = mem();
        let mut t = MmioTransport::new(3, 0, vec![], 64, 2);
        assert_eq!(init(&mut t, &m, 0x1000), MmioEffect::NeedsReset);
        assert!(!t.is_active());
    }

    #[test]
    fn a_queue_outside_guest_memory_needs_a_reset() {
        let m = mem();
        let mut t = MmioTransport::new(2, 0, vec![], 256, 1);
        assert_eq!(init(&mut t, &m, 1 << 40), MmioEffect::NeedsReset);
        assert_ne!(r(&t, reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
        assert_ne!(r(&t, reg::INTERRUPT_STATUS) & INT_CONFIG, 0);
        assert!(!t.is_active());
        // DRIVER_OK on a device that needs a reset does not activate it.
        assert_ne!(w(&mut t, reg::STATUS, 0xf, &m), MmioEffect::Activated);
        w(&mut t, reg::INTERRUPT_ACK, INT_CONFIG, &m);
        assert_eq!(r(&t, reg::INTERRUPT_STATUS), 0);
    }
}
