//! colo's MicroVM monitor: one KVM guest per `colo-vmm` process.
//!
//! The library holds what other colo components need to drive a VMM without linking KVM code
//! into themselves: the exit statuses and [`ExitRecord`], the control-socket protocol with a
//! blocking [`ControlClient`], and where the workload guest is ([`workload_guest_path`]). The VMM
//! itself ([`run`] with a [`VmConfig`]) is what the `colo-vmm` binary calls. See `docs/vmm.md`.

pub mod control;
pub mod exit;
mod guest_image;
pub mod jail;
pub mod seccomp;
mod vmm;

pub use control::{ControlClient, ControlClientError, ControlRequest, Stats};
pub use exit::{
    DroppedBytes, EXIT_BAD_INPUT, EXIT_GUEST_CRASH, EXIT_GUEST_RESET, EXIT_SHUTDOWN, EXIT_SIGNAL,
    EXIT_VMM_ERROR, ExitReason, ExitRecord, ExitRecordError, GUEST_EXIT_CODE_MAX, MAX_RECORD_BYTES,
    open_untrusted, read_untrusted,
};
pub use guest_image::{
    GuestImageError, WORKLOAD_GUEST_ELF, WORKLOAD_GUEST_ENV, WORKLOAD_GUEST_PATH,
    workload_guest_path,
};
pub use vmm::capped_output::{CappedFile, MIN_LOG_LIMIT, older_half, parse_log_limit};
pub use vmm::devices::SerialTarget;
/// The virtio-blk device without a guest, for `benches/io_path.rs`; not part of the library's
/// API (only with the `bench-harness` feature).
#[cfg(feature = "bench-harness")]
#[doc(hidden)]
pub use vmm::devices::virtio::block::bench_harness as device_bench;
/// The virtio-blk device against a fuzzer-written guest, for `fuzz/`; not part of the library's
/// API (only with the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use vmm::devices::virtio::block::fuzz_harness as fuzzing;
/// The virtio-console device against a fuzzer-written guest, for `fuzz/`; not part of the
/// library's API (only with the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use vmm::devices::virtio::console::fuzz_harness as fuzzing_console;
pub use vmm::{DiskConfig, JailIds, MAX_VCPUS, MIN_MEMORY_MIB, Outcome, StartError, VmConfig, run};
