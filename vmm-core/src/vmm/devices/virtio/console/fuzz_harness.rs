//! The virtio-console device against a guest the fuzzer writes (`fuzz/fuzz_targets/virtio_console.rs`):
//! a 64 KiB guest memory holding whatever descriptor tables, rings and buffers the input says,
//! both queues placed and sized by the input, and the calls the `colo-chan` thread makes,
//! [`Console::deliver`] (host bytes into receive buffers) and [`Console::collect`] (guest output
//! off the transmit queue), in an order the input picks. Outside the unit tests it is compiled
//! only with the `fuzzing` feature, so it is no part of the library the agent links.
//!
//! Input layout, little-endian: for each queue (receive, then transmit)
//! `[size: u16][desc: u16][avail: u16][used: u16]`, then `[steps: u8]`, then guest memory from
//! address 0. Each of the 8 bits of `steps`, lowest first, is one step: 1 delivers, 0 collects.
//! The host input is the first 2 KiB of guest memory's image (whatever it holds).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{Console, GuestOutput, HostInput, INPUT_HOLD_MAX, OUTPUT_HOLD_MAX};
use crate::vmm::devices::mmio_bus::MmioDevice;
use crate::vmm::devices::virtio::block::fuzz_harness::u16_at;
use crate::vmm::devices::virtio::status;

/// Guest memory of every run.
pub const MEM_BYTES: usize = 64 << 10;
/// Bytes of host input offered.
const HOST_INPUT: usize = 2048;
/// Bytes before guest memory's image.
const HEADER: usize = 17;

/// What one run left behind, for the target's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the device asked for a reset (DEVICE_NEEDS_RESET).
    pub needs_reset: bool,
    /// Whether both queues became usable.
    pub activated: bool,
    /// Host bytes the guest received.
    pub delivered: usize,
    /// Guest bytes the host got.
    pub collected: usize,
}

/// Sets up a console and a guest from `data` (layout in the module doc) and runs the steps.
/// Panics (a finding) if the device loses host input or holds more output than its bound.
pub fn run(data: &[u8]) -> Outcome {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_BYTES)]).expect("guest memory");
    let image = data.get(HEADER..).unwrap_or_default();
    let image = &image[..image.len().min(MEM_BYTES)];
    mem.write_slice(image, GuestAddress(0)).expect("image fits");
    let dev = Console::new(0xd000_8000, 13).expect("eventfds");
    let w = |off: u64, v: u32| dev.mmio_write(off, &v.to_le_bytes(), &mem);
    // The Linux driver's setup sequence (virtio 1.x §3.1.1), with the queues where the input says.
    let ack_driver = status::ACKNOWLEDGE | status::DRIVER;
    w(0x70, ack_driver);
    w(0x24, 1);
    w(0x20, 1);
    w(0x70, ack_driver | status::FEATURES_OK);
    for q in 0..2u32 {
        let at = 8 * q as usize;
        w(0x30, q);
        w(0x38, u32::from(u16_at(data, at)));
        w(0x80, u32::from(u16_at(data, at + 2)));
        w(0x90, u32::from(u16_at(data, at + 4)));
        w(0xa0, u32::from(u16_at(data, at + 6)));
        w(0x44, 1);
    }
    w(0x70, ack_driver | status::FEATURES_OK | status::DRIVER_OK);
    let activated = dev.transport().is_active();
    let mut input = HostInput::default();
    let offered = &image[..image.len().min(HOST_INPUT)];
    input.push(offered);
    let pushed = input.len();
    assert!(pushed <= INPUT_HOLD_MAX);
    let mut out = GuestOutput::default();
    let steps = data.get(HEADER - 1).copied().unwrap_or(0);
    let (mut delivered, mut collected) = (0, 0);
    for bit in 0..8 {
        if steps >> bit & 1 == 1 {
            delivered += dev.deliver(&mem, &mut input);
        } else {
            collected += dev.collect(&mem, &mut out);
            // The host takes what it got, as the channel thread's client would.
            let n = out.waiting().len();
            out.consume(n / 2);
        }
        assert!(
            out.waiting().len() <= OUTPUT_HOLD_MAX,
            "output past its bound"
        );
        assert_eq!(
            delivered + input.len(),
            pushed,
            "host input lost or made up"
        );
    }
    let mut st = [0u8; 4];
    dev.mmio_read(0x70, &mut st);
    Outcome {
        needs_reset: u32::from_le_bytes(st) & status::DEVICE_NEEDS_RESET != 0,
        activated,
        delivered,
        collected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RX: (u16, u16, u16) = (0x1000, 0x1800, 0x2000);
    const TX: (u16, u16, u16) = (0x3000, 0x3800, 0x4000);

    /// An input with 8-entry queues, one chain available on each: a 64-byte receive buffer at
    /// 0x6000 and a 5-byte transmit buffer at 0x7000 ("hello").
    fn input(steps: u8, rx_flags: u16) -> Vec<u8> {
        let mut mem = vec![0u8; 0x8000];
        let desc = |mem: &mut Vec<u8>, table: u16, addr: u64, len: u32, flags: u16| {
            let at = usize::from(table);
            mem[at..at + 8].copy_from_slice(&addr.to_le_bytes());
            mem[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
            mem[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
        };
        desc(&mut mem, RX.0, 0x6000, 64, rx_flags);
        desc(&mut mem, TX.0, 0x7000, 5, 0);
        for avail in [RX.1, TX.1] {
            let a = usize::from(avail);
            mem[a + 2..a + 4].copy_from_slice(&1u16.to_le_bytes());
        }
        mem[0x7000..0x7005].copy_from_slice(b"hello");
        let mut data = Vec::new();
        for (d, a, u) in [RX, TX] {
            for v in [8u16, d, a, u] {
                data.extend_from_slice(&v.to_le_bytes());
            }
        }
        data.push(steps);
        data.extend_from_slice(&mem);
        data
    }

    #[test]
    fn a_well_formed_guest_gets_input_and_gives_output() {
        // Deliver first, then collect.
        let o = run(&input(0b0000_0001, 2));
        assert!(o.activated && !o.needs_reset, "{o:?}");
        assert_eq!((o.delivered, o.collected), (64, 5));
    }

    #[test]
    fn a_receive_buffer_the_device_may_not_write_needs_a_reset() {
        // The receive descriptor lacks VIRTQ_DESC_F_WRITE.
        let o = run(&input(0b0000_0001, 0));
        assert!(o.activated && o.needs_reset, "{o:?}");
        assert_eq!(o.delivered, 0);
    }

    #[test]
    fn no_input_idles() {
        let o = run(&[]);
        assert!(
            !o.needs_reset && o.delivered == 0 && o.collected == 0,
            "{o:?}"
        );
    }
}
