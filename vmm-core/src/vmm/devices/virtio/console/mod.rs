//! virtio-console: the host channel of a Linux guest (`/dev/hvc0`), one port, no
//! `VIRTIO_CONSOLE_F_MULTIPORT`, so queue 0 is the receive queue (host → guest) and queue 1 the
//! transmit queue (guest → host).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Console`]: transport registers (vCPU threads), moving bytes between the queues and the host-side buffers ([`Console::deliver`], [`Console::collect`]) |
//! | `channel.rs` | the `--channel` Unix socket and the `colo-chan` thread that serves it |
//!
//! Backpressure, never loss: bytes from the host wait in [`HostInput`] (at most
//! [`INPUT_HOLD_MAX`]) until the guest posts receive buffers, and the socket is not read while
//! any wait; guest output waits in [`GuestOutput`] (at most [`OUTPUT_HOLD_MAX`]) until the host
//! client takes it, and the transmit queue is not served beyond that, so a flooding guest stalls
//! on its own queue instead of growing the VMM. A chain longer than the room left is consumed
//! piecewise. A broken chain (indirect, cut short, a descriptor outside guest memory or in the
//! wrong direction) sets DEVICE_NEEDS_RESET: nothing panics, nothing is read or written outside
//! the guest.

mod channel;
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub mod fuzz_harness;
#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use virtio_bindings::virtio_ids;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

pub use channel::{ChannelError, ChannelThread, bind_channel};

use super::INT_USED_RING;
use super::chain::{Desc, DescTable, walk_whole};
use super::mmio::{MmioEffect, MmioTransport};
use crate::vmm::devices::mmio_bus::MmioDevice;

/// Index of the receive queue (host → guest).
pub const RECEIVE_QUEUE: usize = 0;
/// Index of the transmit queue (guest → host).
pub const TRANSMIT_QUEUE: usize = 1;
/// Queue size offered to the guest (both queues).
const QUEUE_MAX: u16 = 256;
/// Most bytes of guest output held for the host client; the transmit queue waits beyond it.
pub const OUTPUT_HOLD_MAX: usize = 64 * 1024;
/// Most bytes read from the host client ahead of the guest's receive buffers.
pub const INPUT_HOLD_MAX: usize = 16 * 1024;
/// `struct virtio_console_config` (cols, rows, max_nr_ports, emerg_wr): offered as zeros, as
/// none of the features that give its fields meaning is offered.
const CONFIG_LEN: usize = 12;

/// Bytes from the host client not yet in guest buffers.
#[derive(Debug, Default)]
pub struct HostInput {
    bytes: Vec<u8>,
    start: usize,
}

impl HostInput {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left under [`INPUT_HOLD_MAX`].
    pub fn room(&self) -> usize {
        INPUT_HOLD_MAX.saturating_sub(self.len())
    }

    /// Appends what the client sent (the caller keeps it within [`Self::room`]).
    pub fn push(&mut self, data: &[u8]) {
        self.bytes.drain(..self.start);
        self.start = 0;
        self.bytes.extend_from_slice(data);
    }

    fn waiting(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.bytes.len());
    }
}

/// Guest output not yet written to the host client, and the transmit chain being taken when it
/// did not fit.
#[derive(Debug, Default)]
pub struct GuestOutput {
    bytes: Vec<u8>,
    partial: Option<PartialChain>,
}

impl GuestOutput {
    /// The bytes waiting for the client.
    pub fn waiting(&self) -> &[u8] {
        &self.bytes
    }

    /// Drops the first `n` bytes (the client took them).
    pub fn consume(&mut self, n: usize) {
        self.bytes.drain(..n.min(self.bytes.len()));
    }

    fn room(&self) -> usize {
        OUTPUT_HOLD_MAX.saturating_sub(self.bytes.len())
    }
}

/// A transmit chain copied in part: its head, its descriptors and how far the copy got.
#[derive(Debug)]
struct PartialChain {
    generation: u64,
    head: u16,
    descs: Vec<Desc>,
    desc: usize,
    offset: u32,
}

/// The virtio-console device of a VM.
#[derive(Debug)]
pub struct Console {
    /// Guest physical address of its virtio-mmio window.
    pub base: u64,
    /// Its interrupt line.
    pub irq: u32,
    transport: Mutex<MmioTransport>,
    /// Written by KVM when the guest notifies either queue (ioeventfd).
    pub notify: EventFd,
    /// Raises the guest interrupt (irqfd).
    pub irq_event: EventFd,
}

impl Console {
    /// A console at MMIO `base` with interrupt `irq`.
    pub fn new(base: u64, irq: u32) -> std::io::Result<Self> {
        Ok(Self {
            base,
            irq,
            transport: Mutex::new(MmioTransport::new(
                virtio_ids::VIRTIO_ID_CONSOLE,
                0,
                vec![0; CONFIG_LEN],
                QUEUE_MAX,
                2,
            )),
            notify: EventFd::new(libc::EFD_NONBLOCK)?,
            irq_event: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    fn transport(&self) -> MutexGuard<'_, MmioTransport> {
        self.transport.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the guest has posted a receive buffer, so bytes read from the client now would
    /// go somewhere.
    pub fn can_receive(&self, mem: &GuestMemoryMmap) -> bool {
        let t = self.transport();
        let q = &t.queues[RECEIVE_QUEUE];
        t.is_active()
            && q.avail_idx(mem, Ordering::Acquire)
                .is_ok_and(|i| i.0 != q.next_avail())
    }

    /// Moves waiting host bytes into the guest's receive buffers; returns how many moved. Each
    /// buffer is returned as soon as it holds something; the rest waits for more buffers.
    pub fn deliver(&self, mem: &GuestMemoryMmap, input: &mut HostInput) -> usize {
        let mut t = self.transport();
        let mut moved = 0;
        let mut used = false;
        while !input.is_empty() && t.is_active() {
            let Some(head) = self.pop_head(&mut t, RECEIVE_QUEUE, mem) else {
                break;
            };
            let Some(descs) = self.checked_chain(&mut t, RECEIVE_QUEUE, mem, head, true) else {
                break;
            };
            let mut written = 0u32;
            for d in &descs {
                if input.is_empty() {
                    break;
                }
                let take = (d.len as usize).min(input.len());
                // The range was checked against guest memory above.
                if mem.write_slice(&input.waiting()[..take], d.addr).is_err() {
                    break;
                }
                input.consume(take);
                written += take as u32;
            }
            moved += written as usize;
            if t.queues[RECEIVE_QUEUE]
                .add_used(mem, head, written)
                .is_err()
            {
                self.needs_reset(&mut t);
                break;
            }
            used = true;
        }
        if used {
            self.notify_used(&mut t, RECEIVE_QUEUE, mem);
        }
        moved
    }

    /// Takes guest output from the transmit queue into `out`, up to [`OUTPUT_HOLD_MAX`] held;
    /// returns how many bytes it took. A chain is returned to the guest once copied whole.
    pub fn collect(&self, mem: &GuestMemoryMmap, out: &mut GuestOutput) -> usize {
        let mut t = self.transport();
        let mut taken = 0;
        let mut used = false;
        if out
            .partial
            .as_ref()
            .is_some_and(|p| p.generation != t.generation)
        {
            // The guest reset the device: that chain no longer exists.
            out.partial = None;
        }
        while out.room() > 0 && t.is_active() {
            let mut chain = match out.partial.take() {
                Some(p) => p,
                None => {
                    let Some(head) = self.pop_head(&mut t, TRANSMIT_QUEUE, mem) else {
                        break;
                    };
                    let Some(descs) = self.checked_chain(&mut t, TRANSMIT_QUEUE, mem, head, false)
                    else {
                        break;
                    };
                    PartialChain {
                        generation: t.generation,
                        head,
                        descs,
                        desc: 0,
                        offset: 0,
                    }
                }
            };
            taken += copy_out(mem, &mut chain, out);
            if chain.desc < chain.descs.len() {
                out.partial = Some(chain);
                break;
            }
            if t.queues[TRANSMIT_QUEUE]
                .add_used(mem, chain.head, 0)
                .is_err()
            {
                self.needs_reset(&mut t);
                break;
            }
            used = true;
        }
        if used {
            self.notify_used(&mut t, TRANSMIT_QUEUE, mem);
        }
        taken
    }

    /// The head of the next available chain of `queue`, or `None` (an unreadable ring also sets
    /// DEVICE_NEEDS_RESET, so the caller then sees the device inactive).
    fn pop_head(&self, t: &mut MmioTransport, queue: usize, mem: &GuestMemoryMmap) -> Option<u16> {
        let q = &mut t.queues[queue];
        if let Some(c) = q.pop_descriptor_chain(mem) {
            return Some(c.head_index());
        }
        if q.avail_idx(mem, Ordering::Acquire).is_err() {
            self.needs_reset(t);
        }
        None
    }

    /// The descriptors of the chain at `head`, each inside guest memory and all in the
    /// direction the queue needs (`writable` for the receive queue); otherwise
    /// DEVICE_NEEDS_RESET and `None`.
    fn checked_chain(
        &self,
        t: &mut MmioTransport,
        queue: usize,
        mem: &GuestMemoryMmap,
        head: u16,
        writable: bool,
    ) -> Option<Vec<Desc>> {
        let q = &t.queues[queue];
        let table = DescTable {
            addr: GuestAddress(q.desc_table()),
            size: q.size(),
        };
        let ok = walk_whole(mem, table, head).ok().filter(|descs| {
            descs.iter().all(|d| {
                d.writable == writable
                    && (d.len == 0 || GuestMemoryBackend::check_range(mem, d.addr, d.len as usize))
            })
        });
        if ok.is_none() {
            self.needs_reset(t);
        }
        ok
    }

    fn needs_reset(&self, t: &mut MmioTransport) {
        t.set_needs_reset();
        let _ = self.irq_event.write(1);
    }

    fn notify_used(&self, t: &mut MmioTransport, queue: usize, mem: &GuestMemoryMmap) {
        if t.queues[queue].needs_notification(mem).unwrap_or(true) {
            t.interrupt_status.fetch_or(INT_USED_RING, Ordering::SeqCst);
            let _ = self.irq_event.write(1);
        }
    }
}

/// Copies from `chain` into `out` as much as fits; returns the bytes copied.
fn copy_out(mem: &GuestMemoryMmap, chain: &mut PartialChain, out: &mut GuestOutput) -> usize {
    let mut copied = 0;
    while let Some(d) = chain.descs.get(chain.desc) {
        let left = (d.len - chain.offset) as usize;
        let take = left.min(out.room());
        if take > 0 {
            let at = out.bytes.len();
            out.bytes.resize(at + take, 0);
            // The descriptor was checked against guest memory when the chain was taken.
            let from = GuestAddress(d.addr.0 + u64::from(chain.offset));
            if mem.read_slice(&mut out.bytes[at..], from).is_err() {
                out.bytes.truncate(at);
                chain.desc = chain.descs.len();
                return copied;
            }
            copied += take;
            chain.offset += take as u32;
        }
        if chain.offset < d.len {
            return copied;
        }
        chain.desc += 1;
        chain.offset = 0;
    }
    copied
}

impl MmioDevice for Console {
    /// A guest read of the register window.
    fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        self.transport().read(offset, data);
    }

    /// A guest write to the register window.
    fn mmio_write(&self, offset: u64, data: &[u8], mem: &GuestMemoryMmap) {
        let effect = self.transport().write(offset, data, mem);
        match effect {
            // Let the channel thread look at the queues.
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
