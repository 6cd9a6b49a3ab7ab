//! virtio 1.x over MMIO: the transport registers ([`mmio`]) and the block device ([`block`]).

pub mod block;
pub mod mmio;

/// Device status bits (virtio 1.x §2.1); the driver's bits are used by the tests.
#[allow(dead_code)]
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready to drive it.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// VIRTIO_F_VERSION_1: modern (1.x) device.
pub const F_VERSION_1: u64 = 1 << 32;

/// Interrupt status bit: the used ring changed.
pub const INT_USED_RING: u32 = 1;
/// Interrupt status bit: the configuration (or status) changed.
pub const INT_CONFIG: u32 = 2;
