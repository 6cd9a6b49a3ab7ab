//! vCPU threads: one per vCPU, named `colo-vcpu-<N>`, a small state machine (running / paused /
//! stopped) driven over a channel and kicked out of `KVM_RUN` with a signal plus
//! `immediate_exit`.

use std::cell::Cell;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use seccompiler::BpfProgram;

use super::shared::VmShared;
use crate::seccomp::{self, SeccompError, ThreadKind};
use crate::vmm::outcome::Outcome;

/// Stack of a vCPU thread: exits are handled in a few frames, so 256 KiB is plenty and keeps
/// the VMM's private memory small.
const VCPU_STACK_SIZE: usize = 256 * 1024;

/// What the VMM tells a vCPU thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuCommand {
    /// Leave `KVM_RUN`, acknowledge, and wait for `Resume` or `Stop`.
    Pause,
    /// Run again after a pause.
    Resume,
    /// End the thread.
    Stop,
}

/// KVM exits seen by the VMM, summed over vCPUs.
#[derive(Debug, Default)]
pub struct ExitCounters {
    /// Port I/O.
    pub io: AtomicU64,
    /// MMIO.
    pub mmio: AtomicU64,
    /// HLT reaching user space.
    pub hlt: AtomicU64,
    /// Everything else, including kicks.
    pub other: AtomicU64,
}

thread_local! {
    /// The `kvm_run` page of the vCPU this thread runs, for the kick signal handler.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The real-time signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn kick_handler(_: libc::c_int) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's own mapped `kvm_run` page, set before the first
        // KVM_RUN and valid for the thread's life; a byte store is async-signal-safe.
        unsafe { std::ptr::write_volatile(&raw mut (*run).immediate_exit, 1) };
    }
}

/// Installs the kick handler (once per process, before vCPU threads start).
pub fn install_kick_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid starting point; we set a plain handler that only
    // stores one byte (async-signal-safe), with an empty mask.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = kick_handler as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        act.sa_flags = 0;
        if libc::sigaction(kick_signal(), &act, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A running vCPU thread.
#[derive(Debug)]
pub struct VcpuThread {
    /// vCPU index.
    pub index: u32,
    /// Linux thread id.
    pub tid: u32,
    commands: Sender<VcpuCommand>,
    handle: JoinHandle<()>,
}

impl VcpuThread {
    /// Starts the thread of vCPU `index`; it installs `filter`, reports its thread id (or why
    /// the filter could not be installed, and ends) on `tids` and acknowledges pauses on
    /// `acks`.
    pub fn spawn(
        vcpu: VcpuFd,
        index: u32,
        shared: Arc<VmShared>,
        sched_idle: bool,
        filter: BpfProgram,
        tids: Sender<(u32, Result<u32, SeccompError>)>,
        acks: Sender<u32>,
    ) -> std::io::Result<(Sender<VcpuCommand>, JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name(format!("colo-vcpu-{index}"))
            .stack_size(VCPU_STACK_SIZE)
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() } as u32;
                if sched_idle {
                    set_sched_idle();
                }
                // The filter goes on before the guest runs its first instruction; without it,
                // the vCPU never runs.
                if let Err(e) = seccomp::install(ThreadKind::Vcpu, &filter) {
                    let _ = tids.send((index, Err(e)));
                    return;
                }
                let _ = tids.send((index, Ok(tid)));
                run_loop(vcpu, index, &shared, &rx, &acks);
            })?;
        Ok((tx, handle))
    }

    /// Wraps a spawned thread once its thread id is known.
    pub fn new(
        index: u32,
        tid: u32,
        commands: Sender<VcpuCommand>,
        handle: JoinHandle<()>,
    ) -> Self {
        Self {
            index,
            tid,
            commands,
            handle,
        }
    }

    /// CPU time the thread has used, nanoseconds (its CPU-time clock; no `/proc` needed, which
    /// a jailed VMM does not have). 0 once the thread has ended.
    pub fn cpu_ns(&self) -> u64 {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the pthread_t belongs to a thread we spawned and never detach (see
        // `command`); the call writes one clock id we own.
        if unsafe { libc::pthread_getcpuclockid(self.handle.as_pthread_t(), &mut clock) } != 0 {
            return 0;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
            return 0;
        }
        (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
    }

    /// Sends `cmd` and kicks the thread out of `KVM_RUN` so it sees it at once.
    pub fn command(&self, cmd: VcpuCommand) {
        let _ = self.commands.send(cmd);
        // SAFETY: the pthread_t belongs to a thread we spawned and never detach; the thread may
        // have ended, in which case pthread_kill reports ESRCH and does nothing.
        unsafe { libc::pthread_kill(self.handle.as_pthread_t(), kick_signal()) };
    }
}

/// Clears this thread's `kvm_run` pointer when dropped.
struct ForgetRunPage;

impl Drop for ForgetRunPage {
    fn drop(&mut self) {
        KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
    }
}

fn set_sched_idle() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

fn run_loop(
    mut vcpu: VcpuFd,
    index: u32,
    shared: &VmShared,
    commands: &Receiver<VcpuCommand>,
    acks: &Sender<u32>,
) {
    KVM_RUN.with(|c| c.set(vcpu.get_kvm_run() as *mut kvm_run));
    // Dropped before `vcpu` (locals go before parameters): a kick that arrives after the
    // `kvm_run` page is unmapped must find no pointer to it.
    let _forget_run_page = ForgetRunPage;
    loop {
        // Commands first: a kick that lands after this check sets immediate_exit, so the next
        // KVM_RUN returns at once and we come back here.
        loop {
            match commands.try_recv() {
                Ok(VcpuCommand::Pause) => {
                    let _ = acks.send(index);
                    loop {
                        match commands.recv() {
                            Ok(VcpuCommand::Resume) => break,
                            Ok(VcpuCommand::Pause) => {
                                let _ = acks.send(index);
                            }
                            Ok(VcpuCommand::Stop) | Err(_) => return,
                        }
                    }
                }
                Ok(VcpuCommand::Resume) => {}
                Ok(VcpuCommand::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        let ended = match vcpu.run() {
            Ok(exit) => handle_exit(exit, index, shared),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                shared.exits.other.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => Some(Outcome::vmm_error(format!("KVM_RUN on vCPU {index}: {e}"))),
        };
        if let Some(mut outcome) = ended {
            if outcome.reason == crate::ExitReason::GuestCrash
                && let Ok(regs) = vcpu.get_regs()
            {
                outcome.message.push_str(&format!(" (rip={:#x})", regs.rip));
            }
            shared.finish(outcome);
            return;
        }
    }
}

/// Handles one exit; returns how the VM ends if it does.
fn handle_exit(exit: VcpuExit<'_>, index: u32, shared: &VmShared) -> Option<Outcome> {
    let ex = &shared.exits;
    match exit {
        VcpuExit::IoOut(port, data) => {
            ex.io.fetch_add(1, Ordering::Relaxed);
            shared.devices().io_out(port, data)
        }
        VcpuExit::IoIn(port, data) => {
            ex.io.fetch_add(1, Ordering::Relaxed);
            shared.devices().io_in(port, data);
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            ex.mmio.fetch_add(1, Ordering::Relaxed);
            shared.mmio_read(addr, data);
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            ex.mmio.fetch_add(1, Ordering::Relaxed);
            shared.mmio_write(addr, data);
            None
        }
        VcpuExit::Hlt => {
            ex.hlt.fetch_add(1, Ordering::Relaxed);
            None
        }
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => {
            ex.other.fetch_add(1, Ordering::Relaxed);
            None
        }
        VcpuExit::Shutdown => Some(Outcome::guest_crash(format!(
            "triple fault (KVM_EXIT_SHUTDOWN) on vCPU {index}"
        ))),
        VcpuExit::InternalError => Some(Outcome::guest_crash(format!(
            "KVM internal error on vCPU {index} (emulation failure: on KVM-PVM hosts guest kernel code runs through KVM's emulator, which lacks some instructions)"
        ))),
        VcpuExit::FailEntry(reason, _) => Some(Outcome::guest_crash(format!(
            "VM entry failed on vCPU {index} (hardware reason {reason:#x})"
        ))),
        VcpuExit::SystemEvent(kind, _) => match kind {
            kvm_bindings::KVM_SYSTEM_EVENT_CRASH => Some(Outcome::guest_crash(format!(
                "guest crash event on vCPU {index}"
            ))),
            kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Some(Outcome::guest_reset("shutdown event")),
            _ => Some(Outcome::guest_reset("reset event")),
        },
        other => {
            ex.other.fetch_add(1, Ordering::Relaxed);
            Some(Outcome::guest_crash(format!(
                "unexpected KVM exit on vCPU {index}: {other:?}"
            )))
        }
    }
}
