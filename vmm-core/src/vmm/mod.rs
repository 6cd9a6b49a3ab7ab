//! One MicroVM: assembled by `builder.rs`, run by its vCPU threads (`vstate/`) and devices
//! (`devices/`), watched by the main thread's loop (`event_loop.rs`, `commands.rs`), ended by
//! `teardown.rs` (exit status, exit record).
//!
//! | path | what |
//! |---|---|
//! | `config.rs`, `error.rs` | [`VmConfig`] (what `colo-vmm run` asks for), [`StartError`] |
//! | `builder.rs` | the start steps: arguments, KVM VM + irqchip, memory, devices, kernel, vCPUs |
//! | `vstate/` | guest memory, CPUID, vCPU threads, state shared with the main thread |
//! | `boot/`, `layout.rs` | kernel loading and entry (colo note, PVH, Linux), the guest memory map |
//! | `devices/` | one folder per device (serial, virtio block, virtio console) and the port / MMIO buses |
//! | `event_loop.rs`, `commands.rs`, `control_server.rs` | the main thread: poll loop, control commands, control socket |
//! | `teardown.rs`, `outcome.rs`, `signals.rs` | how the VM ends and what it leaves behind |
//! | `log.rs`, `capped_output.rs`, `start_trace.rs` | the VMM's own log, `--log-limit`, `COLO_VMM_TRACE` |

pub mod boot;
mod builder;
pub mod capped_output;
mod commands;
mod config;
mod control_server;
pub mod devices;
mod error;
mod event_loop;
pub mod layout;
mod log;
mod outcome;
mod signals;
mod start_trace;
mod teardown;
pub mod vstate;

use std::sync::Arc;
use std::time::Instant;

use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use crate::exit::ExitReason;
use boot::EntryProtocol;
use capped_output::DroppedCounters;
pub use config::{JailIds, MAX_VCPUS, MIN_MEMORY_MIB, VmConfig};
use control_server::ControlServer;
pub use devices::virtio::block::DiskConfig;
use devices::virtio::block::{Disk, IoThread};
use devices::virtio::console::ChannelThread;
pub use error::StartError;
pub use log::Logger;
pub use outcome::Outcome;
use signals::TerminationSignals;
use start_trace::StartTrace;
use teardown::write_record;
use vstate::shared::VmShared;
use vstate::vcpu::VcpuThread;

/// Runs a VM to its end and returns the VMM's exit status (see [`crate::exit`]). Writes the exit
/// record when one was asked for, also when the VM could not start.
pub fn run(cfg: &VmConfig) -> i32 {
    let started = Instant::now();
    if let Some(limit) = cfg.log_limit
        && limit < capped_output::MIN_LOG_LIMIT
    {
        let err = StartError::BadArgument(format!(
            "--log-limit {limit} is below the least limit, {} bytes",
            capped_output::MIN_LOG_LIMIT
        ));
        return refuse(cfg, &Logger::stderr_only(), &err);
    }
    let logger = match Logger::open(cfg.log.as_deref(), cfg.log_limit) {
        Ok(l) => l,
        Err(e) => {
            let err = StartError::File {
                what: "--log",
                path: cfg.log.clone().unwrap_or_default(),
                source: e,
            };
            return refuse(cfg, &Logger::stderr_only(), &err);
        }
    };
    let vmm = match builder::build_microvm(cfg, &logger, started) {
        Ok(v) => v,
        Err(e) => return refuse(cfg, &logger, &e),
    };
    let (outcome, vmm) = vmm.wait();
    let trace = vmm.trace;
    let code = vmm.finish(cfg, &logger, &outcome);
    trace.mark("VM torn down");
    code
}

/// Reports a VM that could not start: one line, the exit record, the status.
fn refuse(cfg: &VmConfig, logger: &Logger, err: &StartError) -> i32 {
    logger.line(&format!("error: {err}"));
    let code = err.exit_code();
    write_record(
        cfg,
        logger,
        &Outcome {
            reason: ExitReason::VmmError,
            exit_code: code,
            message: err.to_string(),
        },
        &logger.dropped_counters(),
    );
    code
}

/// A started VM.
struct Vmm {
    // Keeps the VM alive; vCPU fds moved into their threads.
    _vm: VmFd,
    mem: GuestMemoryMmap,
    memory_bytes: u64,
    shared: Arc<VmShared>,
    vcpus: Vec<VcpuThread>,
    disks: Vec<Arc<Disk>>,
    io_thread: Option<IoThread>,
    channel: Option<ChannelThread>,
    acks: crossbeam_channel::Receiver<u32>,
    /// Output dropped to stay within `--log-limit`.
    dropped: DroppedCounters,
    control: Option<ControlServer>,
    signals: TerminationSignals,
    protocol: EntryProtocol,
    started: Instant,
    paused: bool,
    trace: StartTrace,
}
