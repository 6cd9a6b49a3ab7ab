//! The VM's devices, one folder per device, and the buses that route guest exits to them.
//!
//! | path | what |
//! |---|---|
//! | `port_io.rs` | port-I/O bus: COM1, the i8042 reset line, the debug-exit port |
//! | `serial/` | COM1: a 16550 writing to stdout or a file, bounded by `--log-limit` |
//! | `mmio_bus.rs` | MMIO windows → devices ([`mmio_bus::MmioDevice`]) |
//! | `virtio/` | the virtio-mmio transport every virtio device shares |
//! | `virtio/block/` | virtio-blk: the disk, its requests, the `colo-io` thread, the rate limiter |
//! | `virtio/console/` | virtio-console: the `--channel` socket and the `colo-chan` thread |
//!
//! A new device is a folder here plus one `attach_*` step in `builder.rs`.

pub mod mmio_bus;
mod port_io;
pub mod serial;
pub mod virtio;

pub use port_io::PortDevices;
pub use serial::{Serial, SerialTarget};
