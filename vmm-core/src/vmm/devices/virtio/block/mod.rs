//! A VM disk: virtio-mmio transport + virtio-blk requests on a raw file, with its token buckets
//! and counters. Registers are served on vCPU threads; requests run on the IO thread.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::rate_limiter::RateLimiter;
use super::virtio::INT_USED_RING;
use super::virtio::block::{self, ParsedChain, SECTOR};
use super::virtio::mmio::{MmioEffect, MmioTransport};
use crate::control::DiskStats;

/// Most disks a VM may have (each takes an IRQ line from 5 up).
pub const MAX_DISKS: usize = 8;
/// Queue size offered to the guest.
const QUEUE_MAX: u16 = 256;

/// `--disk PATH[,ro][,bw=BYTES_PER_S][,iops=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// Raw backing file.
    pub path: PathBuf,
    /// Read-only for the guest.
    pub read_only: bool,
    /// Bandwidth limit, bytes per second (0 = unlimited).
    pub bw: u64,
    /// Operations per second (0 = unlimited).
    pub iops: u64,
}

/// Parses `8MiB`, `512K`, `1G`, `1000` (binary units; `B`, `iB` optional).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

impl DiskConfig {
    /// Parses `PATH[,ro][,bw=BYTES_PER_S][,iops=N]` (bw takes units: `bw=8MiB`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(',');
        let path = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("--disk `{spec}`: give PATH[,ro][,bw=BYTES_PER_S][,iops=N]"))?;
        let mut cfg = Self {
            path: PathBuf::from(path),
            read_only: false,
            bw: 0,
            iops: 0,
        };
        for p in parts {
            match p.split_once('=') {
                None if p == "ro" => cfg.read_only = true,
                Some(("bw", v)) => {
                    cfg.bw = parse_size(v).ok_or_else(|| {
                        format!("--disk `{spec}`: bw={v} is not a size (e.g. bw=8MiB, bw=1048576)")
                    })?
                }
                Some(("iops", v)) => {
                    cfg.iops = v
                        .parse()
                        .map_err(|_| format!("--disk `{spec}`: iops={v} is not a whole number"))?
                }
                _ => {
                    return Err(format!(
                        "--disk `{spec}`: unknown option `{p}` (options: ro, bw=, iops=)"
                    ));
                }
            }
        }
        Ok(cfg)
    }
}

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
        let mut features = block::F_FLUSH;
        if config.read_only {
            features |= block::F_RO;
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
                block::DEVICE_ID,
                features,
                cfg_space,
                QUEUE_MAX,
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

    /// A guest read of the register window.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        self.transport().read(offset, data);
    }

    /// A guest write to the register window.
    pub fn mmio_write(&self, offset: u64, data: &[u8], mem: &GuestMemoryMmap) {
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
                let chain = match t.queue.pop_descriptor_chain(mem) {
                    Some(c) => c,
                    None => {
                        // An avail index the driver cannot have written means a broken queue.
                        if t.queue
                            .avail_idx(mem, std::sync::atomic::Ordering::Acquire)
                            .is_err()
                        {
                            t.set_needs_reset();
                            let _ = self.irq_event.write(1);
                        }
                        return QueueState::Idle;
                    }
                };
                let parsed = block::parse_chain(chain, mem, self.capacity, self.config.read_only);
                let now = Instant::now();
                let mut limiter = self.limiter();
                if !limiter.try_consume(parsed.cost(), now) {
                    let wait = limiter.wait_time(parsed.cost(), now);
                    t.queue.go_to_previous_position();
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
                let c = block::execute(req, &self.file, mem, &self.id);
                if c.status == block::S_OK {
                    let counter = match req.kind {
                        block::RequestKind::In => Some(&self.counters.read_bytes),
                        block::RequestKind::Out => Some(&self.counters.write_bytes),
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
                block::Completion {
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
        if t.queue.add_used(mem, parsed.head, used_len).is_err() {
            t.set_needs_reset();
            let _ = self.irq_event.write(1);
            return;
        }
        if t.queue.needs_notification(mem).unwrap_or(true) {
            t.interrupt_status
                .fetch_or(INT_USED_RING, std::sync::atomic::Ordering::SeqCst);
            let _ = self.irq_event.write(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs_parse() {
        assert_eq!(
            DiskConfig::parse("/d.img,ro,bw=8MiB,iops=100").unwrap(),
            DiskConfig {
                path: "/d.img".into(),
                read_only: true,
                bw: 8 << 20,
                iops: 100
            }
        );
        assert_eq!(DiskConfig::parse("/d.img").unwrap().bw, 0);
        assert_eq!(DiskConfig::parse("x,bw=1048576").unwrap().bw, 1 << 20);
        for bad in ["", ",ro", "x,bw=fast", "x,iops=-1", "x,speed=1"] {
            assert!(DiskConfig::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("1T"), None);
    }
}
