//! virtio 1.x over MMIO, the part every virtio device shares: the transport registers
//! ([`mmio`]) and the spec's constants (from `virtio-bindings`). Each device has its own folder
//! beside this file: [`block`] and [`console`]; vsock and net would go next to them.

pub mod block;
pub mod chain;
pub mod console;
pub mod device_thread;
pub mod mmio;

use virtio_bindings::{virtio_config, virtio_mmio};

/// Device status bits (virtio 1.x §2.1); the driver's bits are used by the tests.
#[allow(dead_code)]
pub mod status {
    use super::virtio_config;

    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = virtio_config::VIRTIO_CONFIG_S_ACKNOWLEDGE;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = virtio_config::VIRTIO_CONFIG_S_DRIVER;
    /// The driver is ready to drive it.
    pub const DRIVER_OK: u32 = virtio_config::VIRTIO_CONFIG_S_DRIVER_OK;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = virtio_config::VIRTIO_CONFIG_S_FEATURES_OK;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;
    /// The driver gave up on the device.
    pub const FAILED: u32 = virtio_config::VIRTIO_CONFIG_S_FAILED;
}

/// VIRTIO_F_VERSION_1: modern (1.x) device.
pub const F_VERSION_1: u64 = 1 << virtio_config::VIRTIO_F_VERSION_1;

/// Interrupt status bit: the used ring changed.
pub const INT_USED_RING: u32 = virtio_mmio::VIRTIO_MMIO_INT_VRING;
/// Interrupt status bit: the configuration (or status) changed.
pub const INT_CONFIG: u32 = virtio_mmio::VIRTIO_MMIO_INT_CONFIG;
