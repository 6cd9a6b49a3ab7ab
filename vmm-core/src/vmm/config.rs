//! What `colo-vmm run` asks for: [`VmConfig`] and its bounds.

use std::path::PathBuf;

use super::devices::SerialTarget;
use super::devices::virtio::block::DiskConfig;

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
    /// Unix socket of the virtio-console host channel (`/dev/hvc0` in a Linux guest).
    pub channel: Option<PathBuf>,
    /// Run jailed as this uid and gid (see [`crate::jail`]); `None`: with the rights it was
    /// started with.
    pub jail: Option<JailIds>,
}

/// The unprivileged ids a jailed VMM runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JailIds {
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

impl VmConfig {
    /// The jail this configuration asks for: its ids, and the directories the VMM writes to
    /// after the start (its output files', its exit record's and its control socket's).
    pub fn jail(&self) -> Option<crate::jail::Jail> {
        let ids = self.jail?;
        let mut writable = Vec::new();
        if let SerialTarget::File(p) = &self.serial {
            writable.push(crate::jail::parent_dir(p));
        }
        for p in [
            &self.log,
            &self.control_socket,
            &self.exit_record,
            &self.channel,
        ]
        .into_iter()
        .flatten()
        {
            writable.push(crate::jail::parent_dir(p));
        }
        Some(crate::jail::Jail {
            uid: ids.uid,
            gid: ids.gid,
            writable,
            max_threads: u64::from(self.vcpus) + crate::jail::SPARE_THREADS,
        })
    }

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
            channel: None,
            jail: None,
        }
    }
}
