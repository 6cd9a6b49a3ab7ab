//! Assembles a VM from small steps, in order: check the arguments, create the KVM VM and its
//! irqchip, guest memory, attach each device, load the kernel, build the CPUID table, start the
//! vCPUs. A new device is one `attach_*` step here and a folder in `devices/`.
//!
//! The order is what keeps start fast and errors early: everything the user can get wrong
//! (arguments, disk files, the control socket) is checked before `/dev/kvm` is opened; the PIT
//! and the serial interrupt exist only for Linux guests (each costs KVM synchronisation at start
//! and at teardown, which colo's workload guest does not need).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::boot::{self, BootConfig, EntryProtocol};
use super::capped_output::DroppedCounters;
use super::control_server::ControlServer;
use super::devices::mmio_bus::MmioBus;
use super::devices::virtio::block::{Disk, DiskError, IoThread, MAX_DISKS};
use super::devices::virtio::console::{ChannelThread, Console, bind_channel};
use super::devices::virtio::mmio::QUEUE_NOTIFY_OFFSET;
use super::devices::{PortDevices, Serial, SerialTarget};
use super::error::{StartError, host_err, kvm_err};
use super::log::Logger;
use super::signals::TerminationSignals;
use super::start_trace::StartTrace;
use super::vstate::cpuid;
use super::vstate::memory::{self, MemoryError, MemoryOptions};
use super::vstate::shared::VmShared;
use super::vstate::vcpu::{self, VcpuThread};
use super::{MAX_VCPUS, MIN_MEMORY_MIB, VmConfig, Vmm, layout};
use crate::seccomp::{self, Filters, ThreadKind};

/// Builds and starts the VM `cfg` describes; its vCPUs run when this returns.
pub(super) fn build_microvm(
    cfg: &VmConfig,
    logger: &Logger,
    started: Instant,
) -> Result<Vmm, StartError> {
    let trace = StartTrace::new();
    let memory_bytes = check_arguments(cfg)?;
    let filters = Filters::compile()?;
    let jail = cfg.jail();
    if let Some(j) = &jail {
        crate::jail::check(j)?;
    }
    let disks = open_disks(cfg, logger)?;
    let control = bind_control_socket(cfg)?;
    let channel_listener = match &cfg.channel {
        Some(p) => Some(bind_channel(p)?),
        None => None,
    };
    trace.mark("arguments checked");

    let (kvm, vm) = create_vm()?;
    trace.mark("VM created");
    let mem = memory::create(
        memory_bytes,
        MemoryOptions {
            prefault: cfg.prefault,
            hugepages: cfg.hugepages,
        },
    )?;
    trace.mark("memory allocated");
    map_guest_memory(&vm, &mem)?;
    trace.mark("memory mapped");

    let mut mmio = MmioBus::default();
    let mut cmdline_extra = Vec::new();
    attach_disks(&vm, &disks, &mut mmio, &mut cmdline_extra)?;
    let console = match channel_listener {
        Some(l) => Some((attach_console(&vm, &mut mmio, &mut cmdline_extra)?, l)),
        None => None,
    };
    let protocol = load_kernel(cfg, &mem, memory_bytes, cmdline_extra)?;
    trace.mark("kernel loaded");
    // Linux calibrates against the PIT and drives the UART with interrupts; colo's guest
    // uses neither.
    let linux_devices = !matches!(protocol, EntryProtocol::Colo(_));
    if linux_devices {
        create_pit(&vm)?;
    }
    let base_cpuid = build_cpuid(&kvm, logger)?;
    trace.mark("cpuid built");
    let mut serial = attach_serial(&vm, cfg, linux_devices)?;
    let dropped = DroppedCounters {
        serial: serial.dropped_counter(),
        ..logger.dropped_counters()
    };

    let shared = Arc::new(
        VmShared::new(PortDevices::new(serial), mmio, mem.clone()).map_err(host_err("eventfd"))?,
    );
    if let Some(j) = &jail {
        // Everything is open: from here on the VMM needs no file it could not reach jailed.
        crate::jail::enter(j)?;
        trace.mark("jailed");
    }
    let io_thread = start_io_thread(&disks, &mem, &filters)?;
    let channel = match console {
        Some((console, listener)) => Some(
            ChannelThread::spawn(
                console,
                listener,
                mem.clone(),
                Some(filters.get(ThreadKind::Channel).clone()),
            )
            .map_err(host_err("channel thread"))?,
        ),
        None => None,
    };
    vcpu::install_kick_handler().map_err(host_err("signal handler"))?;
    let signals = TerminationSignals::install().map_err(host_err("signalfd"))?;
    let (vcpus, acks) = start_vcpus(&vm, cfg, &base_cpuid, &protocol, &shared, &filters, &trace)?;
    // Last: threads started after this would inherit the main thread's filter.
    seccomp::install(ThreadKind::Main, filters.get(ThreadKind::Main))?;
    trace.mark("filters installed");
    log_started(logger, &vcpus, io_thread.as_ref());
    if let (Some(t), Some(path)) = (&channel, &cfg.channel) {
        logger.line(&format!(
            "channel {} served by colo-chan tid={}",
            path.display(),
            t.tid
        ));
    }
    trace.mark("started line printed");
    Ok(Vmm {
        _vm: vm,
        mem,
        memory_bytes,
        shared,
        vcpus,
        disks,
        io_thread,
        channel,
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

/// Checks vCPUs, memory and the number of disks; returns the guest memory size in bytes.
fn check_arguments(cfg: &VmConfig) -> Result<u64, StartError> {
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
    Ok(memory_bytes)
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

/// Opens every `--disk` file, each at its own virtio-mmio window and interrupt line.
fn open_disks(cfg: &VmConfig, logger: &Logger) -> Result<Vec<Arc<Disk>>, StartError> {
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
    Ok(disks)
}

fn bind_control_socket(cfg: &VmConfig) -> Result<Option<ControlServer>, StartError> {
    Ok(match &cfg.control_socket {
        Some(p) => Some(ControlServer::bind(p)?),
        None => None,
    })
}

/// Opens `/dev/kvm`, creates the VM and its in-kernel irqchip (PIC, IOAPIC, LAPIC).
fn create_vm() -> Result<(Kvm, VmFd), StartError> {
    let kvm = Kvm::new().map_err(StartError::NoKvm)?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    Ok((kvm, vm))
}

/// Gives KVM one memory slot per region of `mem`.
fn map_guest_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), StartError> {
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
    Ok(())
}

/// Puts each disk on the MMIO bus, wires its queue notification (ioeventfd) and interrupt
/// (irqfd) in KVM, and tells a Linux guest where it is.
fn attach_disks(
    vm: &VmFd,
    disks: &[Arc<Disk>],
    mmio: &mut MmioBus,
    cmdline_extra: &mut Vec<String>,
) -> Result<(), StartError> {
    for d in disks {
        vm.register_ioevent(
            &d.notify,
            &IoEventAddress::Mmio(d.base + QUEUE_NOTIFY_OFFSET),
            NoDatamatch,
        )
        .map_err(kvm_err("KVM_IOEVENTFD (disk)"))?;
        vm.register_irqfd(&d.irq_event, d.irq)
            .map_err(kvm_err("KVM_IRQFD (disk)"))?;
        mmio.insert(d.base, layout::VIRTIO_MMIO_SIZE, d.clone());
        cmdline_extra.push(format!("virtio_mmio.device=4K@{:#x}:{}", d.base, d.irq));
    }
    Ok(())
}

/// The virtio-console device behind `--channel`, wired as a disk is: on the MMIO bus, its
/// queue notification an ioeventfd (either queue: the thread looks at both), its interrupt an
/// irqfd, and a Linux guest told where it is.
fn attach_console(
    vm: &VmFd,
    mmio: &mut MmioBus,
    cmdline_extra: &mut Vec<String>,
) -> Result<Arc<Console>, StartError> {
    const _: () = assert!(
        layout::CHANNEL_MMIO_BASE
            >= layout::VIRTIO_MMIO_BASE + MAX_DISKS as u64 * layout::VIRTIO_MMIO_SIZE
            && layout::CHANNEL_IRQ >= layout::VIRTIO_IRQ_BASE + MAX_DISKS as u32
    );
    let console = Arc::new(
        Console::new(layout::CHANNEL_MMIO_BASE, layout::CHANNEL_IRQ)
            .map_err(host_err("eventfd"))?,
    );
    vm.register_ioevent(
        &console.notify,
        &IoEventAddress::Mmio(console.base + QUEUE_NOTIFY_OFFSET),
        NoDatamatch,
    )
    .map_err(kvm_err("KVM_IOEVENTFD (channel)"))?;
    vm.register_irqfd(&console.irq_event, console.irq)
        .map_err(kvm_err("KVM_IRQFD (channel)"))?;
    mmio.insert(console.base, layout::VIRTIO_MMIO_SIZE, console.clone());
    cmdline_extra.push(format!(
        "virtio_mmio.device=4K@{:#x}:{}",
        console.base, console.irq
    ));
    Ok(console)
}

/// Loads the kernel (and initrd) into guest memory; returns how the vCPUs enter it.
fn load_kernel(
    cfg: &VmConfig,
    mem: &GuestMemoryMmap,
    memory_bytes: u64,
    mut linux_cmdline_extra: Vec<String>,
) -> Result<EntryProtocol, StartError> {
    if cpuid::host_is_kvm_pvm() {
        // KVM-PVM runs CPUID of emulated guest kernel code without consulting the table set
        // with KVM_SET_CPUID2 (measured: a cleared XSAVE bit still reaches Linux), so Linux
        // guests are told on their command line as well (docs/vmm.md).
        linux_cmdline_extra.push(cpuid::PVM_LINUX_CMDLINE.to_string());
    }
    Ok(boot::load(
        mem,
        &BootConfig {
            kernel: &cfg.kernel,
            initrd: cfg.initrd.as_deref(),
            cmdline: &cfg.cmdline,
            linux_cmdline_extra: &linux_cmdline_extra.join(" "),
            memory: memory_bytes,
            vcpus: cfg.vcpus,
        },
    )?)
}

/// The PIT, which Linux calibrates its clocks against.
fn create_pit(vm: &VmFd) -> Result<(), StartError> {
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))
}

/// KVM's supported CPUID with the hypervisor bit, minus what KVM-PVM's emulator lacks
/// (`COLO_VMM_DUMP_CPUID=1` logs the table).
fn build_cpuid(kvm: &Kvm, logger: &Logger) -> Result<CpuId, StartError> {
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
    Ok(base_cpuid)
}

/// COM1, writing to `--serial`; with an interrupt line (irqfd) only when `with_irq`.
fn attach_serial(vm: &VmFd, cfg: &VmConfig, with_irq: bool) -> Result<Serial, StartError> {
    let serial_irq = if with_irq {
        let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(host_err("eventfd"))?;
        vm.register_irqfd(&evt, layout::SERIAL_IRQ)
            .map_err(kvm_err("KVM_IRQFD (serial)"))?;
        Some(evt)
    } else {
        None
    };
    Serial::new(cfg.serial.clone(), serial_irq, cfg.log_limit).map_err(|source| StartError::File {
        what: "--serial",
        path: match &cfg.serial {
            SerialTarget::File(p) => p.clone(),
            SerialTarget::Stdout => PathBuf::from("stdout"),
        },
        source,
    })
}

/// The `colo-io` thread, when the VM has disks.
fn start_io_thread(
    disks: &[Arc<Disk>],
    mem: &GuestMemoryMmap,
    filters: &Filters,
) -> Result<Option<IoThread>, StartError> {
    if disks.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        IoThread::spawn(
            disks.to_vec(),
            mem.clone(),
            Some(filters.get(ThreadKind::Io).clone()),
        )
        .map_err(host_err("IO thread"))?,
    ))
}

/// Creates every vCPU, sets its CPUID and registers, and starts its thread; returns the threads
/// (with their thread ids) and the channel on which they acknowledge pauses.
fn start_vcpus(
    vm: &VmFd,
    cfg: &VmConfig,
    base_cpuid: &CpuId,
    protocol: &EntryProtocol,
    shared: &Arc<VmShared>,
    filters: &Filters,
    trace: &StartTrace,
) -> Result<(Vec<VcpuThread>, crossbeam_channel::Receiver<u32>), StartError> {
    let (tid_tx, tid_rx) = crossbeam_channel::unbounded();
    let (ack_tx, acks) = crossbeam_channel::unbounded();
    let mut pending = Vec::new();
    for index in 0..cfg.vcpus {
        let vcpu = vm
            .create_vcpu(u64::from(index))
            .map_err(kvm_err(format!("KVM_CREATE_VCPU {index}")))?;
        vcpu.set_cpuid2(&cpuid::for_vcpu(base_cpuid, index))
            .map_err(kvm_err("KVM_SET_CPUID2"))?;
        boot::setup_vcpu(&vcpu, protocol, index, cfg.vcpus)
            .map_err(kvm_err(format!("setting the registers of vCPU {index}")))?;
        let (tx, handle) = VcpuThread::spawn(
            vcpu,
            index,
            shared.clone(),
            cfg.vcpu_sched_idle,
            filters.get(ThreadKind::Vcpu).clone(),
            tid_tx.clone(),
            ack_tx.clone(),
        )
        .map_err(host_err("spawning a vCPU thread"))?;
        pending.push((index, tx, handle));
    }
    trace.mark("vCPUs started");
    let mut tids = vec![0u32; cfg.vcpus as usize];
    for _ in 0..cfg.vcpus {
        match tid_rx.recv_timeout(Duration::from_secs(10)) {
            Ok((i, Ok(tid))) => tids[i as usize] = tid,
            Ok((_, Err(e))) => return Err(e.into()),
            Err(_) => {}
        }
    }
    let vcpus = pending
        .into_iter()
        .map(|(i, tx, h)| VcpuThread::new(i, tids[i as usize], tx, h))
        .collect();
    Ok((vcpus, acks))
}

/// The `started` line the agent reads the thread ids from.
fn log_started(logger: &Logger, vcpus: &[VcpuThread], io_thread: Option<&IoThread>) {
    let tid_list: Vec<String> = vcpus.iter().map(|v| v.tid.to_string()).collect();
    logger.line(&format!(
        "started pid={} vcpu_tids={} io_tid={}",
        std::process::id(),
        tid_list.join(","),
        io_thread.map_or_else(|| "-".to_string(), |t| t.tid.to_string())
    ));
}
