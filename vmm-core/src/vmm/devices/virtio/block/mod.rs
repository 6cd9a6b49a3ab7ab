//! virtio-blk: a VM disk on a raw file, served over virtio-mmio.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Disk`]: transport registers (vCPU threads), queue processing (IO thread), counters |
//! | `config.rs` | the `--disk` option |
//! | `request.rs` | descriptor chain → [`request::Request`], every guest value checked |
//! | `execute.rs` | a request against the file (`O_DIRECT`, bounce buffer when unaligned) |
//! | `io_thread.rs` | the `colo-io` thread that runs every request of the VM |
//! | `rate_limiter.rs` | token buckets for bandwidth and operations |
//!
//! Registers are served on vCPU threads; requests run on the IO thread.

#[cfg(any(test, feature = "bench-harness"))]
#[cfg_attr(not(feature = "bench-harness"), allow(dead_code))]
pub mod bench_harness;
mod config;
mod execute;
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub mod fuzz_harness;
mod io_thread;
mod rate_limiter;
mod request;
#[cfg(test)]
mod test_util;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use virtio_bindings::{virtio_blk, virtio_ids};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

pub use config::{DiskConfig, parse_size};
use execute::{Completion, execute};
pub use io_thread::IoThread;
use rate_limiter::RateLimiter;
use request::{ParsedChain, RequestKind, S_OK, SECTOR, parse_chain};

use super::INT_USED_RING;
use super::chain::DescTable;
use super::mmio::{MmioEffect, MmioTransport};
use crate::control::DiskStats;
use crate::vmm::devices::mmio_bus::MmioDevice;

/// Most disks a VM may have (each takes an IRQ line from 5 up).
pub const MAX_DISKS: usize = 8;
/// Queue size offered to the guest.
const QUEUE_MAX: u16 = 256;

/// Errors opening a disk; all are bad input.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The file cannot be opened.
    #[error("--disk {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is too small to hold a sector.
    #[error("--disk {0}: the file holds no whole 512-byte sector")]
    Empty(PathBuf),
    /// Too many disks.
    #[error("at most {MAX_DISKS} --disk options are supported")]
    TooMany,
}

#[derive(Debug, Default)]
struct Counters {
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    ops: AtomicU64,
    malformed: AtomicU64,
}

/// One disk of a running VM.
#[derive(Debug)]
pub struct Disk {
    /// Index in `--disk` order.
    pub index: u32,
    /// Its configuration.
    pub config: DiskConfig,
    /// Guest physical address of its virtio-mmio window.
    pub base: u64,
    /// Its interrupt line.
    pub irq: u32,
    file: File,
    /// Whether the file is open with O_DIRECT.
    pub direct: bool,
    capacity: u64,
    id: String,
    transport: Mutex<MmioTransport>,
    limiter: Mutex<RateLimiter>,
    /// Written by KVM when the guest notifies the queue (ioeventfd).
    pub notify: EventFd,
    /// Raises the guest interrupt (irqfd).
    pub irq_event: EventFd,
    counters: Counters,
}

/// What processing the queue left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Nothing more to do until the next notification.
    Idle,
    /// A request waits for the rate limiter this long.
    Throttled(Duration),
}

impl Disk {
    /// Opens the backing file (O_DIRECT, or buffered where the filesystem refuses O_DIRECT;
    /// `direct` tells which) for disk `index` at MMIO `base` with interrupt `irq`.
    pub fn open(index: u32, config: DiskConfig, base: u64, irq: u32) -> Result<Self, DiskError> {
        let open_err = |source| DiskError::Open {
            path: config.path.clone(),
            source,
        };
        let mut opts = OpenOptions::new();
        opts.read(true).write(!config.read_only);
        let (file, direct) = match opts.clone().custom_flags(libc::O_DIRECT).open(&config.path) {
            Ok(f) => (f, true),
            // tmpfs and some other filesystems refuse O_DIRECT.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                (opts.open(&config.path).map_err(open_err)?, false)
            }
            Err(e) => return Err(open_err(e)),
        };
        let size = file.metadata().map_err(open_err)?.len();
        let capacity = size / SECTOR;
        if capacity == 0 {
            return Err(DiskError::Empty(config.path.clone()));
        }
        let mut features = 1 << virtio_blk::VIRTIO_BLK_F_FLUSH;
        if config.read_only {
            features |= 1 << virtio_blk::VIRTIO_BLK_F_RO;
        }
        // Configuration space: capacity in sectors (the other fields are not offered).
        let mut cfg_space = vec![0u8; 24];
        cfg_space[..8].copy_from_slice(&capacity.to_le_bytes());
        let now = Instant::now();
        let limiter = RateLimiter::new(config.bw, config.iops, now);
        let new_evt = || EventFd::new(libc::EFD_NONBLOCK).map_err(open_err);
        Ok(Self {
            index,
            base,
            irq,
            file,
            direct,
            capacity,
            id: format!("colo-disk{index}"),
            transport: Mutex::new(MmioTransport::new(
                virtio_ids::VIRTIO_ID_BLOCK,
                features,
                cfg_space,
                QUEUE_MAX,
                1,
            )),
            limiter: Mutex::new(limiter),
            notify: new_evt()?,
            irq_event: new_evt()?,
            counters: Counters::default(),
            config,
        })
    }

    fn transport(&self) -> MutexGuard<'_, MmioTransport> {
        self.transport.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the token buckets (0 = unlimited); effective for the next request.
    pub fn set_limits(&self, bw: u64, iops: u64) {
        *self.limiter() = RateLimiter::new(bw, iops, Instant::now());
    }

    /// Counters and limits for `stats`.
    pub fn stats(&self) -> DiskStats {
        let (bw, iops) = self.limiter().limits();
        DiskStats {
            index: self.index,
            path: self.config.path.display().to_string(),
            read_bytes: self.counters.read_bytes.load(Ordering::Relaxed),
            write_bytes: self.counters.write_bytes.load(Ordering::Relaxed),
            ops: self.counters.ops.load(Ordering::Relaxed),
            bw,
            iops,
        }
    }

    /// Runs the available requests the token buckets allow (IO thread). The queue lock is held
    /// only to take requests and to complete them, not during the IO itself.
    pub fn process_queue(&self, mem: &GuestMemoryMmap) -> QueueState {
        loop {
            let (parsed, generation) = {
                let mut t = self.transport();
                if !t.is_active() {
                    return QueueState::Idle;
                }
                let chain = match t.queues[0].pop_descriptor_chain(mem) {
                    Some(c) => c,
                    None => {
                        // An avail index the driver cannot have written means a broken queue.
                        if t.queues[0]
                            .avail_idx(mem, std::sync::atomic::Ordering::Acquire)
                            .is_err()
                        {
                            t.set_needs_reset();
                            let _ = self.irq_event.write(1);
                        }
                        return QueueState::Idle;
                    }
                };
                let table = DescTable {
                    addr: GuestAddress(t.queues[0].desc_table()),
                    size: t.queues[0].size(),
                };
                let head = chain.head_index();
                let parsed =
                    match parse_chain(head, table, mem, self.capacity, self.config.read_only) {
                        Ok(p) => p,
                        Err(_) => {
                            // A protocol violation, not a bad request: stop until the reset.
                            t.set_needs_reset();
                            let _ = self.irq_event.write(1);
                            return QueueState::Idle;
                        }
                    };
                let now = Instant::now();
                let mut limiter = self.limiter();
                if !limiter.try_consume(parsed.cost(), now) {
                    let wait = limiter.wait_time(parsed.cost(), now);
                    t.queues[0].go_to_previous_position();
                    return QueueState::Throttled(wait.max(Duration::from_micros(100)));
                }
                (parsed, t.generation)
            };
            self.complete(mem, &parsed, generation);
        }
    }

    fn complete(&self, mem: &GuestMemoryMmap, parsed: &ParsedChain, generation: u64) {
        let completion = match &parsed.request {
            Ok(req) => {
                let c = execute(req, &self.file, mem, &self.id);
                if c.status == S_OK {
                    let counter = match req.kind {
                        RequestKind::In => Some(&self.counters.read_bytes),
                        RequestKind::Out => Some(&self.counters.write_bytes),
                        _ => None,
                    };
                    if let Some(c) = counter {
                        c.fetch_add(req.data_len, Ordering::Relaxed);
                    }
                }
                c
            }
            Err(status) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                Completion {
                    status: *status,
                    used_len: 1,
                }
            }
        };
        self.counters.ops.fetch_add(1, Ordering::Relaxed);
        let mut t = self.transport();
        if t.generation != generation {
            // The guest reset the device meanwhile: this request no longer exists.
            return;
        }
        let used_len = match parsed.status {
            Some(addr) => {
                let _ = mem.write_obj(completion.status, addr);
                completion.used_len
            }
            None => 0,
        };
        if t.queues[0].add_used(mem, parsed.head, used_len).is_err() {
            t.set_needs_reset();
            let _ = self.irq_event.write(1);
            return;
        }
        if t.queues[0].needs_notification(mem).unwrap_or(true) {
            t.interrupt_status
                .fetch_or(INT_USED_RING, std::sync::atomic::Ordering::SeqCst);
            let _ = self.irq_event.write(1);
        }
    }
}

impl MmioDevice for Disk {
    /// A guest read of the register window.
    fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        self.transport().read(offset, data);
    }

    /// A guest write to the register window.
    fn mmio_write(&self, offset: u64, data: &[u8], mem: &GuestMemoryMmap) {
        let effect = self.transport().write(offset, data, mem);
        match effect {
            // Let the IO thread look at the queue.
            MmioEffect::Notify | MmioEffect::Activated => {
                let _ = self.notify.write(1);
            }
            MmioEffect::NeedsReset => {
                let _ = self.irq_event.write(1);
            }
            MmioEffect::Reset | MmioEffect::None => {}
        }
    }
}
