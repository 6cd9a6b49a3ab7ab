//! One MicroVM: KVM setup, guest memory, boot, vCPU threads, devices, control socket, and the
//! end of it all (exit status, exit record).

pub mod boot;
pub mod capped_output;
mod control_server;
pub mod cpuid;
pub mod device_bench;
pub mod devices;
pub mod disk;
mod io_thread;
pub mod layout;
mod log;
pub mod memory;
mod outcome;
pub mod rate_limiter;
mod signals;
mod vcpu;
pub mod virtio;
mod vm_shared;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::control::{
    ControlRequest, ExitCounts, MemoryStats, Stats, VcpuStats, VmState, error_reply, ok_reply,
};
use crate::exit::{EXIT_BAD_INPUT, EXIT_VMM_ERROR, ExitReason, ExitRecord};
use boot::{BootConfig, BootError, EntryProtocol};
use capped_output::DroppedCounters;
use control_server::{ControlServer, ControlSocketError};
use devices::{PortDevices, Serial, SerialTarget};
pub use disk::DiskConfig;
use disk::{Disk, DiskError, MAX_DISKS};
use io_thread::IoThread;
pub use log::Logger;
use memory::{MemoryError, MemoryOptions};
pub use outcome::Outcome;
use signals::TerminationSignals;
use vcpu::{VcpuCommand, VcpuThread};
use vm_shared::VmShared;

/// Most vCPUs a VM may have (APIC ids fit in 8 bits).
pub const MAX_VCPUS: u32 = 254;
/// Least guest memory, MiB.
pub const MIN_MEMORY_MIB: u64 = 8;

/// Everything `colo-vmm run` needs.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Kernel image: ELF (colo guest or vmlinux with PVH note) or bzImage.
    pub kernel: PathBuf,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// Where COM1 output goes.
    pub serial: SerialTarget,
    /// The VMM's own log file.
    pub log: Option<PathBuf>,
    /// Most bytes the serial file and the log file may each hold (with their rotated older
    /// halves), and stdout and stderr may each receive; `None`: unbounded.
    pub log_limit: Option<u64>,
    /// Control socket path.
    pub control_socket: Option<PathBuf>,
    /// Exit record path.
    pub exit_record: Option<PathBuf>,
    /// Make all guest memory resident at start.
    pub prefault: bool,
    /// Back guest memory with transparent huge pages.
    pub hugepages: bool,
    /// Run vCPU threads under SCHED_IDLE.
    pub vcpu_sched_idle: bool,
    /// virtio-blk disks, served by the `colo-io` thread.
    pub disks: Vec<DiskConfig>,
}

impl VmConfig {
    /// Defaults for everything but the kernel: 1 vCPU, 128 MiB, serial on stdout.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            cmdline: String::new(),
            vcpus: 1,
            memory_mib: 128,
            serial: SerialTarget::Stdout,
            log: None,
            log_limit: None,
            control_socket: None,
            exit_record: None,
            prefault: false,
            hugepages: false,
            vcpu_sched_idle: false,
            disks: Vec::new(),
        }
    }
}

/// Why a VM could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bad argument.
    #[error("{0}")]
    BadArgument(String),
    /// The kernel, initrd or command line is unusable.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The control socket is taken or cannot be made.
    #[error(transparent)]
    ControlSocket(#[from] ControlSocketError),
    /// A file named on the command line cannot be opened.
    #[error("{what} {path}: {source}")]
    File {
        /// Which option.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `/dev/kvm` cannot be used.
    #[error(
        "cannot open /dev/kvm: {0}; colo-vmm needs KVM (load kvm, run as a user allowed to use /dev/kvm)"
    )]
    NoKvm(kvm_ioctls::Error),
    /// A KVM call failed.
    #[error("{what} failed: {source}")]
    Kvm {
        /// The ioctl or step.
        what: String,
        /// What KVM said.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A disk cannot be used.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A host resource (thread, eventfd, signal) could not be set up.
    #[error("{what}: {source}")]
    Host {
        /// What was being set up.
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl StartError {
    /// The exit status for this error: [`EXIT_BAD_INPUT`] for the user's mistakes,
    /// [`EXIT_VMM_ERROR`] for host failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadArgument(_)
            | Self::Boot(_)
            | Self::ControlSocket(_)
            | Self::File { .. }
            | Self::Disk(_)
            | Self::NoKvm(_) => EXIT_BAD_INPUT,
            Self::Memory(MemoryError::Prefault { .. }) => EXIT_BAD_INPUT,
            Self::Kvm { .. } | Self::Memory(_) | Self::Host { .. } => EXIT_VMM_ERROR,
        }
    }
}

fn kvm_err(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Kvm { what, source }
}

fn host_err(what: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Host { what, source }
}

/// Prints start phases to stderr when `COLO_VMM_TRACE=1` (to find where start time goes).
#[derive(Debug, Clone, Copy)]
struct StartTrace {
    on: bool,
    t0: Instant,
}

impl StartTrace {
    fn new() -> Self {
        Self {
            on: std::env::var_os("COLO_VMM_TRACE").is_some_and(|v| v == "1"),
            t0: Instant::now(),
        }
    }
    fn mark(&self, what: &str) {
        if self.on {
            let us = self.t0.elapsed().as_micros();
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("colo-vmm: trace {us:>7} us {what}\n").as_bytes(),
            );
        }
    }
}

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
    let vmm = match Vmm::start(cfg, &logger, started) {
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

fn write_record(cfg: &VmConfig, logger: &Logger, outcome: &Outcome, dropped: &DroppedCounters) {
    let Some(path) = &cfg.exit_record else {
        return;
    };
    let record = ExitRecord {
        exit_code: outcome.exit_code,
        reason: outcome.reason,
        message: outcome.message.clone(),
        ended_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        cpu_seconds: process_cpu_seconds(),
        pid: std::process::id(),
        dropped: dropped.snapshot(),
    };
    if let Err(e) = record.write_atomic(path) {
        logger.line(&format!("error: {e}"));
    }
}

/// User + system CPU time of this process (all threads), seconds.
fn process_cpu_seconds() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded and filled the struct.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Total host memory, bytes.
fn host_memory_bytes() -> u64 {
    let mut info = std::mem::MaybeUninit::<libc::sysinfo>::zeroed();
    // SAFETY: sysinfo fills the struct we pass.
    if unsafe { libc::sysinfo(info.as_mut_ptr()) } != 0 {
        return u64::MAX;
    }
    // SAFETY: sysinfo succeeded.
    let info = unsafe { info.assume_init() };
    info.totalram.saturating_mul(u64::from(info.mem_unit))
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

impl Vmm {
    fn start(cfg: &VmConfig, logger: &Logger, started: Instant) -> Result<Self, StartError> {
        let trace = StartTrace::new();
        if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
            return Err(StartError::BadArgument(format!(
                "--vcpus {} is out of range: give 1 to {MAX_VCPUS}",
                cfg.vcpus
            )));
        }
        let memory_bytes = cfg
            .memory_mib
            .checked_mul(1 << 20)
            .filter(|_| cfg.memory_mib >= MIN_MEMORY_MIB)
            .ok_or_else(|| {
                StartError::BadArgument(format!(
                    "--memory-mib {} is out of range: give at least {MIN_MEMORY_MIB}",
                    cfg.memory_mib
                ))
            })?;
        let host = host_memory_bytes();
        if memory_bytes > host {
            return Err(StartError::BadArgument(format!(
                "--memory-mib {} is more than this host has ({} MiB)",
                cfg.memory_mib,
                host >> 20
            )));
        }
        if cfg.disks.len() > MAX_DISKS {
            return Err(DiskError::TooMany.into());
        }
        let mut disks = Vec::with_capacity(cfg.disks.len());
        for (i, d) in cfg.disks.iter().enumerate() {
            let base = layout::VIRTIO_MMIO_BASE + i as u64 * layout::VIRTIO_MMIO_SIZE;
            let disk = Disk::open(
                i as u32,
                d.clone(),
                base,
                layout::VIRTIO_IRQ_BASE + i as u32,
            )?;
            if !disk.direct {
                logger.line(&format!(
                    "warning: --disk {}: the filesystem refuses O_DIRECT, using buffered IO (cgroup v1 IO limits will not see it)",
                    d.path.display()
                ));
            }
            disks.push(Arc::new(disk));
        }
        let control = match &cfg.control_socket {
            Some(p) => Some(ControlServer::bind(p)?),
            None => None,
        };
        trace.mark("arguments checked");

        let kvm = Kvm::new().map_err(StartError::NoKvm)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        trace.mark("VM created");

        let mem = memory::create(
            memory_bytes,
            MemoryOptions {
                prefault: cfg.prefault,
                hugepages: cfg.hugepages,
            },
        )?;
        trace.mark("memory allocated");
        for (slot, region) in mem.iter().enumerate() {
            let host_addr = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| StartError::Memory(MemoryError::Layout(e.to_string())))?;
            let desc = kvm_bindings::kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host_addr as u64,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which the Vmm keeps for as long
            // as the VM exists; KVM only accesses it through this slot.
            unsafe { vm.set_user_memory_region(desc) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        trace.mark("memory mapped");

        let mut linux_cmdline_extra: Vec<String> = disks
            .iter()
            .map(|d| format!("virtio_mmio.device=4K@{:#x}:{}", d.base, d.irq))
            .collect();
        if cpuid::host_is_kvm_pvm() {
            // KVM-PVM runs CPUID of emulated guest kernel code without consulting the table set
            // with KVM_SET_CPUID2 (measured: a cleared XSAVE bit still reaches Linux), so Linux
            // guests are told on their command line as well (docs/vmm.md).
            linux_cmdline_extra.push(cpuid::PVM_LINUX_CMDLINE.to_string());
        }
        let protocol = boot::load(
            &mem,
            &BootConfig {
                kernel: &cfg.kernel,
                initrd: cfg.initrd.as_deref(),
                cmdline: &cfg.cmdline,
                linux_cmdline_extra: &linux_cmdline_extra.join(" "),
                memory: memory_bytes,
                vcpus: cfg.vcpus,
            },
        )?;
        trace.mark("kernel loaded");
        // Linux calibrates against the PIT and drives the UART with interrupts; colo's guest
        // uses neither, and each costs KVM synchronisation (SRCU grace periods, a kernel
        // thread) at start and at teardown, so it gets neither.
        let linux_devices = !matches!(protocol, EntryProtocol::Colo(_));
        if linux_devices {
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        }

        let mut base_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        cpuid::mark_hypervisor(&mut base_cpuid);
        if cpuid::host_is_kvm_pvm() {
            cpuid::hide_emulator_unsupported(&mut base_cpuid);
        }
        if std::env::var_os("COLO_VMM_DUMP_CPUID").is_some() {
            for e in base_cpuid.as_slice() {
                logger.line(&format!(
                    "cpuid {:#010x}.{} eax={:#010x} ebx={:#010x} ecx={:#010x} edx={:#010x}",
                    e.function, e.index, e.eax, e.ebx, e.ecx, e.edx
                ));
            }
        }
        trace.mark("cpuid built");

        let serial_irq = if linux_devices {
            let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(host_err("eventfd"))?;
            vm.register_irqfd(&evt, layout::SERIAL_IRQ)
                .map_err(kvm_err("KVM_IRQFD (serial)"))?;
            Some(evt)
        } else {
            None
        };
        let mut serial =
            Serial::new(cfg.serial.clone(), serial_irq, cfg.log_limit).map_err(|source| {
                StartError::File {
                    what: "--serial",
                    path: match &cfg.serial {
                        SerialTarget::File(p) => p.clone(),
                        SerialTarget::Stdout => PathBuf::from("stdout"),
                    },
                    source,
                }
            })?;
        let dropped = DroppedCounters {
            serial: serial.dropped_counter(),
            ..logger.dropped_counters()
        };
        for d in &disks {
            vm.register_ioevent(
                &d.notify,
                &IoEventAddress::Mmio(d.base + virtio::mmio::QUEUE_NOTIFY_OFFSET),
                NoDatamatch,
            )
            .map_err(kvm_err("KVM_IOEVENTFD (disk)"))?;
            vm.register_irqfd(&d.irq_event, d.irq)
                .map_err(kvm_err("KVM_IRQFD (disk)"))?;
        }
        let shared = Arc::new(
            VmShared::new(PortDevices::new(serial), disks.clone(), mem.clone())
                .map_err(host_err("eventfd"))?,
        );
        let io_thread = if disks.is_empty() {
            None
        } else {
            Some(IoThread::spawn(disks.clone(), mem.clone()).map_err(host_err("IO thread"))?)
        };

        vcpu::install_kick_handler().map_err(host_err("signal handler"))?;
        let signals = TerminationSignals::install().map_err(host_err("signalfd"))?;

        let (tid_tx, tid_rx) = crossbeam_channel::unbounded();
        let (ack_tx, acks) = crossbeam_channel::unbounded();
        let mut pending = Vec::new();
        for index in 0..cfg.vcpus {
            let vcpu = vm
                .create_vcpu(u64::from(index))
                .map_err(kvm_err(format!("KVM_CREATE_VCPU {index}")))?;
            vcpu.set_cpuid2(&cpuid::for_vcpu(&base_cpuid, index))
                .map_err(kvm_err("KVM_SET_CPUID2"))?;
            boot::setup_vcpu(&vcpu, &protocol, index, cfg.vcpus)
                .map_err(kvm_err(format!("setting the registers of vCPU {index}")))?;
            let (tx, handle) = VcpuThread::spawn(
                vcpu,
                index,
                shared.clone(),
                cfg.vcpu_sched_idle,
                tid_tx.clone(),
                ack_tx.clone(),
            )
            .map_err(host_err("spawning a vCPU thread"))?;
            pending.push((index, tx, handle));
        }
        trace.mark("vCPUs started");
        let mut tids = vec![0u32; cfg.vcpus as usize];
        for _ in 0..cfg.vcpus {
            if let Ok((i, tid)) = tid_rx.recv_timeout(Duration::from_secs(10)) {
                tids[i as usize] = tid;
            }
        }
        let vcpus: Vec<VcpuThread> = pending
            .into_iter()
            .map(|(i, tx, h)| VcpuThread::new(i, tids[i as usize], tx, h))
            .collect();
        let tid_list: Vec<String> = tids.iter().map(u32::to_string).collect();
        logger.line(&format!(
            "started pid={} vcpu_tids={} io_tid={}",
            std::process::id(),
            tid_list.join(","),
            io_thread
                .as_ref()
                .map_or_else(|| "-".to_string(), |t| t.tid.to_string())
        ));
        trace.mark("started line printed");
        Ok(Self {
            _vm: vm,
            mem,
            memory_bytes,
            shared,
            vcpus,
            disks,
            io_thread,
            acks,
            dropped,
            control,
            signals,
            protocol,
            started,
            paused: false,
            trace,
        })
    }

    /// Serves the control socket and signals until the VM ends.
    fn wait(mut self) -> (Outcome, Self) {
        loop {
            if let Some(o) = self.shared.outcome() {
                return (o, self);
            }
            let mut fds = vec![
                pollfd(self.shared.end_event().as_raw_fd()),
                pollfd(self.signals.fd().as_raw_fd()),
            ];
            if let Some(c) = &self.control {
                fds.push(pollfd(c.listener.as_raw_fd()));
                fds.extend(c.clients.iter().map(|cl| pollfd(cl.stream.as_raw_fd())));
            }
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if rc < 0 {
                continue;
            }
            if fds[1].revents != 0
                && let Some(name) = self.signals.read()
            {
                self.shared.finish(Outcome::signal(name));
                continue;
            }
            if fds.len() > 2 {
                let ready: Vec<usize> = fds[3..]
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.revents != 0)
                    .map(|(i, _)| i)
                    .collect();
                // Serve from the highest index down: a client that left is removed in place.
                for i in ready.into_iter().rev() {
                    self.serve_client(i);
                }
                if fds[2].revents != 0
                    && let Some(c) = &mut self.control
                {
                    c.accept();
                }
            }
        }
    }

    fn serve_client(&mut self, i: usize) {
        let Some(lines) = self.control.as_mut().and_then(|c| c.read_lines(i)) else {
            return;
        };
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let reply = match ControlRequest::parse(&line) {
                Ok(req) => self.handle(&req),
                Err(e) => error_reply(&e.to_string()),
            };
            if let Some(c) = self.control.as_mut() {
                c.reply(i, &reply);
            }
        }
    }

    fn handle(&mut self, req: &ControlRequest) -> String {
        match req {
            ControlRequest::Pause => match self.pause() {
                Ok(()) => ok_reply::<Stats>(None),
                Err(e) => error_reply(&e),
            },
            ControlRequest::Resume => {
                if self.paused {
                    for v in &self.vcpus {
                        v.command(VcpuCommand::Resume);
                    }
                    self.paused = false;
                }
                ok_reply::<Stats>(None)
            }
            ControlRequest::Stats => ok_reply(Some(&self.stats())),
            ControlRequest::Shutdown => {
                self.shared.finish(Outcome::shutdown());
                ok_reply::<Stats>(None)
            }
            ControlRequest::SetIoLimit { disk, bw, iops } => {
                let found = self.disks.iter().find(|d| {
                    d.index.to_string() == *disk || d.config.path.as_os_str() == disk.as_str()
                });
                match found {
                    Some(d) => {
                        d.set_limits(*bw, *iops);
                        if let Some(t) = &self.io_thread {
                            t.wake();
                        }
                        ok_reply::<Stats>(None)
                    }
                    None => error_reply(&format!(
                        "no disk `{disk}`: this VM has {} disk(s); name one by index (0..) or by path",
                        self.disks.len()
                    )),
                }
            }
        }
    }

    fn pause(&mut self) -> Result<(), String> {
        if self.paused {
            return Ok(());
        }
        while self.acks.try_recv().is_ok() {}
        for v in &self.vcpus {
            v.command(VcpuCommand::Pause);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut acked = 0;
        while acked < self.vcpus.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(_) => acked += 1,
                Err(_) => {
                    // Let the ones that did stop run again: a half-paused VM helps nobody.
                    for v in &self.vcpus {
                        v.command(VcpuCommand::Resume);
                    }
                    return Err(format!(
                        "only {acked} of {} vCPUs stopped within 5 s",
                        self.vcpus.len()
                    ));
                }
            }
        }
        self.paused = true;
        Ok(())
    }

    fn stats(&self) -> Stats {
        let ex = &self.shared.exits;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        Stats {
            state: if self.paused {
                VmState::Paused
            } else {
                VmState::Running
            },
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            vcpus: self
                .vcpus
                .iter()
                .map(|v| VcpuStats {
                    index: v.index,
                    tid: v.tid,
                    cpu_ns: thread_cpu_ns(v.tid),
                })
                .collect(),
            io_tid: self.io_thread.as_ref().map(|t| t.tid),
            exits: ExitCounts {
                io: load(&ex.io),
                mmio: load(&ex.mmio),
                hlt: load(&ex.hlt),
                other: load(&ex.other),
            },
            memory: MemoryStats {
                guest_bytes: self.memory_bytes,
                resident_bytes: memory::resident_bytes(&self.mem),
            },
            progress: self.progress(),
            disks: self.disks.iter().map(|d| d.stats()).collect(),
            dropped: self.dropped.snapshot(),
        }
    }

    /// The workload guest's progress block: IO bytes plus the work units of every vCPU.
    fn progress(&self) -> u64 {
        let EntryProtocol::Colo(note) = self.protocol else {
            return 0;
        };
        let read = |addr: u64| self.mem.read_obj::<u64>(GuestAddress(addr)).unwrap_or(0);
        let mut total = read(note.progress + 8);
        for i in 0..self.vcpus.len() as u64 {
            total = total.wrapping_add(read(note.progress + 64 + 64 * i));
        }
        total
    }

    /// Writes out serial output, the log line and the exit record; returns the exit status.
    fn finish(self, cfg: &VmConfig, logger: &Logger, outcome: &Outcome) -> i32 {
        self.trace.mark("VM ended");
        // Stop the guest first, so nothing it does after its end reaches the serial output.
        for v in &self.vcpus {
            v.command(VcpuCommand::Stop);
        }
        if let Some(t) = &self.io_thread {
            t.stop();
        }
        self.shared.devices().flush();
        let dropped = self.dropped.snapshot();
        if dropped.any() {
            logger.line(&format!(
                "output over --log-limit {}: dropped {} bytes of serial output, {} of this log \
                 (oldest first; the rest is in PATH and PATH.1), {} of stderr (newest first)",
                cfg.log_limit.unwrap_or(0),
                dropped.serial,
                dropped.log,
                dropped.stderr
            ));
        }
        logger.line(&format!(
            "{}: {} (exit status {})",
            outcome.reason.as_str(),
            outcome.message,
            outcome.exit_code
        ));
        write_record(cfg, logger, outcome, &self.dropped);
        if let Some(c) = &self.control {
            c.remove();
        }
        self.trace.mark("exit record written");
        outcome.exit_code
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// CPU time of thread `tid` of this process, from its schedstat (first field, ns).
fn thread_cpu_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(0)
}
