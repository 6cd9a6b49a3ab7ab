//! The console against a small guest memory whose driver side the tests play: register writes
//! through the MMIO window, descriptor tables and rings written as a guest would.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::vmm::devices::virtio::{INT_CONFIG, status};

const MIB: usize = 1 << 20;
const SIZE: u16 = 16;
/// Descriptor table, available ring and used ring of each queue.
const RINGS: [(u64, u64, u64); 2] = [(0x1000, 0x2000, 0x3000), (0x4000, 0x5000, 0x6000)];
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

mod reg {
    use virtio_bindings::virtio_mmio as m;
    pub const DRIVER_FEATURES: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES as u64;
    pub const DRIVER_FEATURES_SEL: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES_SEL as u64;
    pub const QUEUE_SEL: u64 = m::VIRTIO_MMIO_QUEUE_SEL as u64;
    pub const QUEUE_NUM: u64 = m::VIRTIO_MMIO_QUEUE_NUM as u64;
    pub const QUEUE_READY: u64 = m::VIRTIO_MMIO_QUEUE_READY as u64;
    pub const QUEUE_NOTIFY: u64 = m::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
    pub const STATUS: u64 = m::VIRTIO_MMIO_STATUS as u64;
    pub const DEVICE_ID: u64 = m::VIRTIO_MMIO_DEVICE_ID as u64;
    pub const INTERRUPT_STATUS: u64 = m::VIRTIO_MMIO_INTERRUPT_STATUS as u64;
    pub const QUEUE_DESC_LOW: u64 = m::VIRTIO_MMIO_QUEUE_DESC_LOW as u64;
    pub const QUEUE_DRIVER_LOW: u64 = m::VIRTIO_MMIO_QUEUE_AVAIL_LOW as u64;
    pub const QUEUE_DEVICE_LOW: u64 = m::VIRTIO_MMIO_QUEUE_USED_LOW as u64;
}

/// The driver side: a console, its memory, and where each queue's rings stand.
struct Guest {
    dev: Arc<Console>,
    mem: GuestMemoryMmap,
    next_desc: [u16; 2],
    avail_idx: [u16; 2],
    used_seen: [u16; 2],
}

impl Guest {
    /// A console the driver has set up (both queues ready, DRIVER_OK).
    fn new() -> Self {
        let mut g = Self {
            dev: Arc::new(Console::new(0xd000_8000, 13).unwrap()),
            mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 * MIB)]).unwrap(),
            next_desc: [0; 2],
            avail_idx: [0; 2],
            used_seen: [0; 2],
        };
        g.init();
        g
    }

    fn w(&self, off: u64, v: u32) {
        self.dev.mmio_write(off, &v.to_le_bytes(), &self.mem);
    }

    fn r(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.dev.mmio_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn init(&mut self) {
        self.w(reg::STATUS, 0);
        self.next_desc = [0; 2];
        self.avail_idx = [0; 2];
        self.used_seen = [0; 2];
        self.w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, 1); // VERSION_1
        self.w(reg::STATUS, 0xb);
        for (q, (desc, avail, used)) in RINGS.iter().enumerate() {
            self.w(reg::QUEUE_SEL, q as u32);
            self.w(reg::QUEUE_NUM, u32::from(SIZE));
            self.w(reg::QUEUE_DESC_LOW, *desc as u32);
            self.w(reg::QUEUE_DRIVER_LOW, *avail as u32);
            self.w(reg::QUEUE_DEVICE_LOW, *used as u32);
            // Zero rings, as a fresh driver's would be.
            self.mem.write_obj(0u16, GuestAddress(*avail + 2)).unwrap();
            self.mem.write_obj(0u16, GuestAddress(*used + 2)).unwrap();
            self.w(reg::QUEUE_READY, 1);
        }
        self.w(reg::STATUS, 0xf);
    }

    fn needs_reset(&self) -> bool {
        self.r(reg::STATUS) & status::DEVICE_NEEDS_RESET != 0
    }

    /// Writes descriptor `i` of queue `q`.
    fn desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = RINGS[q].0 + 16 * u64::from(i);
        self.mem.write_obj(addr, GuestAddress(at)).unwrap();
        self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
        self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
        self.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
    }

    /// Makes the chain at `head` of queue `q` available.
    fn offer(&mut self, q: usize, head: u16) {
        let avail = RINGS[q].1;
        let slot = u64::from(self.avail_idx[q] % SIZE);
        self.mem
            .write_obj(head, GuestAddress(avail + 4 + 2 * slot))
            .unwrap();
        self.avail_idx[q] = self.avail_idx[q].wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx[q], GuestAddress(avail + 2))
            .unwrap();
    }

    /// Posts a chain of `(addr, len, flags)` on queue `q` (NEXT links added); returns its head.
    fn post(&mut self, q: usize, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc[q];
        for (k, (addr, len, flags)) in descs.iter().enumerate() {
            let i = (head + k as u16) % SIZE;
            let last = k + 1 == descs.len();
            let flags = if last { *flags } else { flags | F_NEXT };
            self.desc(q, i, *addr, *len, flags, (i + 1) % SIZE);
        }
        self.next_desc[q] = (head + descs.len() as u16) % SIZE;
        self.offer(q, head);
        head
    }

    /// The used entries `(head, len)` of queue `q` added since the last look.
    fn used(&mut self, q: usize) -> Vec<(u16, u32)> {
        let used = RINGS[q].2;
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let mut out = Vec::new();
        while self.used_seen[q] != idx {
            let at = used + 4 + 8 * u64::from(self.used_seen[q] % SIZE);
            let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
            out.push((id as u16, len));
            self.used_seen[q] = self.used_seen[q].wrapping_add(1);
        }
        out
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn it_is_a_console_with_two_queues() {
    let g = Guest::new();
    assert_eq!(g.r(reg::DEVICE_ID), 3);
    assert!(!g.needs_reset());
    // A third queue does not exist.
    g.w(reg::QUEUE_SEL, 2);
    assert_eq!(
        g.r(virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NUM_MAX as u64),
        0
    );
}

#[test]
fn guest_output_is_taken_in_order_and_the_chain_returned() {
    let mut g = Guest::new();
    g.mem.write_slice(b"hello ", GuestAddress(0x10000)).unwrap();
    g.mem.write_slice(b"world", GuestAddress(0x11000)).unwrap();
    let head = g.post(TRANSMIT_QUEUE, &[(0x10000, 6, 0), (0x11000, 5, 0)]);
    let mut out = GuestOutput::default();
    assert_eq!(g.dev.collect(&g.mem, &mut out), 11);
    assert_eq!(out.waiting(), b"hello world");
    assert_eq!(g.used(TRANSMIT_QUEUE), vec![(head, 0)]);
    assert_ne!(g.r(reg::INTERRUPT_STATUS) & INT_USED_RING, 0);
    assert_eq!(g.dev.irq_event.read().unwrap(), 1);
    out.consume(6);
    assert_eq!(out.waiting(), b"world");
}

#[test]
fn host_input_waits_for_receive_buffers_and_is_never_dropped() {
    let mut g = Guest::new();
    let data = pattern(100, 7);
    let mut input = HostInput::default();
    input.push(&data);
    // No buffer posted: nothing moves, nothing is lost.
    assert!(!g.dev.can_receive(&g.mem));
    assert_eq!(g.dev.deliver(&g.mem, &mut input), 0);
    assert_eq!(input.len(), 100);
    // One 64-byte buffer: 64 bytes move, 36 wait.
    let h1 = g.post(RECEIVE_QUEUE, &[(0x20000, 64, F_WRITE)]);
    assert!(g.dev.can_receive(&g.mem));
    assert_eq!(g.dev.deliver(&g.mem, &mut input), 64);
    assert_eq!(g.used(RECEIVE_QUEUE), vec![(h1, 64)]);
    assert_eq!(input.len(), 36);
    assert!(!g.dev.can_receive(&g.mem));
    // A two-descriptor buffer takes the rest and is returned holding 36 bytes.
    let h2 = g.post(
        RECEIVE_QUEUE,
        &[(0x21000, 30, F_WRITE), (0x22000, 64, F_WRITE)],
    );
    assert_eq!(g.dev.deliver(&g.mem, &mut input), 36);
    assert_eq!(g.used(RECEIVE_QUEUE), vec![(h2, 36)]);
    assert!(input.is_empty());
    let mut got = g.read(0x20000, 64);
    got.extend(g.read(0x21000, 30));
    got.extend(g.read(0x22000, 6));
    assert_eq!(got, data);
    // Posted buffers stay posted while no input waits.
    g.post(RECEIVE_QUEUE, &[(0x23000, 64, F_WRITE)]);
    assert_eq!(g.dev.deliver(&g.mem, &mut input), 0);
    assert!(g.dev.can_receive(&g.mem));
    assert!(g.used(RECEIVE_QUEUE).is_empty());
}

#[test]
fn input_is_held_within_its_bound() {
    let mut input = HostInput::default();
    assert_eq!(input.room(), INPUT_HOLD_MAX);
    input.push(&pattern(INPUT_HOLD_MAX, 1));
    assert_eq!(input.room(), 0);
    input.consume(10);
    assert_eq!(input.room(), 10);
}

#[test]
fn a_flooding_guest_stalls_at_the_output_bound() {
    let mut g = Guest::new();
    let chunk = 40 * 1024;
    for k in 0..3u64 {
        let addr = 0x100000 + k * 0x10000;
        g.mem
            .write_slice(&pattern(chunk, k as u8), GuestAddress(addr))
            .unwrap();
        g.post(TRANSMIT_QUEUE, &[(addr, chunk as u32, 0)]);
    }
    let mut out = GuestOutput::default();
    // Only OUTPUT_HOLD_MAX bytes are taken; the second chain stays half-read, the third waits.
    assert_eq!(g.dev.collect(&g.mem, &mut out), OUTPUT_HOLD_MAX);
    assert_eq!(g.used(TRANSMIT_QUEUE), vec![(0, 0)]);
    assert_eq!(g.dev.collect(&g.mem, &mut out), 0);
    // The client takes it all: the rest follows, in order.
    let mut all = out.waiting().to_vec();
    out.consume(OUTPUT_HOLD_MAX);
    assert_eq!(g.dev.collect(&g.mem, &mut out), 3 * chunk - OUTPUT_HOLD_MAX);
    all.extend_from_slice(out.waiting());
    assert_eq!(g.used(TRANSMIT_QUEUE), vec![(1, 0), (2, 0)]);
    let want: Vec<u8> = (0..3).flat_map(|k| pattern(chunk, k)).collect();
    assert_eq!(all, want);
}

#[test]
fn a_chain_larger_than_the_bound_moves_piecewise() {
    let mut g = Guest::new();
    let len = 3 * MIB - 0x1000;
    let data = pattern(len, 9);
    g.mem.write_slice(&data, GuestAddress(MIB as u64)).unwrap();
    g.post(TRANSMIT_QUEUE, &[(MIB as u64, len as u32, 0)]);
    let mut out = GuestOutput::default();
    let mut got = Vec::new();
    let mut rounds = 0;
    while got.len() < len {
        let n = g.dev.collect(&g.mem, &mut out);
        assert!(n > 0 && out.waiting().len() <= OUTPUT_HOLD_MAX);
        if got.len() + n < len {
            assert!(
                g.used(TRANSMIT_QUEUE).is_empty(),
                "returned before copied whole"
            );
        }
        got.extend_from_slice(out.waiting());
        out.consume(n);
        rounds += 1;
    }
    assert_eq!(got, data);
    assert_eq!(rounds, len.div_ceil(OUTPUT_HOLD_MAX));
    assert_eq!(g.used(TRANSMIT_QUEUE), vec![(0, 0)]);
}

/// Each case: a fresh device, one bad chain; the device must ask for a reset, move nothing and
/// keep the host's bytes.
#[test]
fn bad_chains_ask_for_a_reset_and_lose_nothing() {
    type Setup = fn(&mut Guest);
    let cases: [(&str, Setup); 7] = [
        ("receive buffer the device may not write", |g| {
            g.post(RECEIVE_QUEUE, &[(0x20000, 64, 0)]);
        }),
        ("receive buffer outside guest memory", |g| {
            g.post(RECEIVE_QUEUE, &[((4 * MIB) as u64 - 8, 64, F_WRITE)]);
        }),
        ("transmit buffer the device would write", |g| {
            g.post(TRANSMIT_QUEUE, &[(0x20000, 64, 0), (0x21000, 8, F_WRITE)]);
        }),
        ("transmit buffer far outside guest memory", |g| {
            g.post(TRANSMIT_QUEUE, &[(u64::MAX - 4, 64, 0)]);
        }),
        ("transmit chain that loops", |g| {
            g.desc(TRANSMIT_QUEUE, 0, 0x20000, 8, F_NEXT, 1);
            g.desc(TRANSMIT_QUEUE, 1, 0x20000, 8, F_NEXT, 0);
            g.offer(TRANSMIT_QUEUE, 0);
        }),
        ("transmit chain linking out of the table", |g| {
            g.desc(TRANSMIT_QUEUE, 0, 0x20000, 8, F_NEXT, 200);
            g.offer(TRANSMIT_QUEUE, 0);
        }),
        ("indirect descriptor", |g| {
            g.desc(RECEIVE_QUEUE, 0, 0x20000, 16 * 8, F_INDIRECT, 0);
            g.offer(RECEIVE_QUEUE, 0);
        }),
    ];
    for (what, setup) in cases {
        let mut g = Guest::new();
        setup(&mut g);
        let mut input = HostInput::default();
        input.push(b"kept");
        let mut out = GuestOutput::default();
        assert_eq!(g.dev.deliver(&g.mem, &mut input), 0, "{what}");
        assert_eq!(g.dev.collect(&g.mem, &mut out), 0, "{what}");
        assert!(g.needs_reset(), "{what}");
        assert_ne!(g.r(reg::INTERRUPT_STATUS) & INT_CONFIG, 0, "{what}");
        assert_eq!(input.len(), 4, "{what}");
        assert!(out.waiting().is_empty(), "{what}");
        assert!(!g.dev.can_receive(&g.mem), "{what}");
        // A reset and a new setup bring it back, and the held bytes arrive.
        g.init();
        assert!(!g.needs_reset(), "{what}");
        g.post(RECEIVE_QUEUE, &[(0x30000, 64, F_WRITE)]);
        assert_eq!(g.dev.deliver(&g.mem, &mut input), 4, "{what}");
        assert_eq!(g.read(0x30000, 4), b"kept", "{what}");
    }
}

#[test]
fn a_reset_forgets_a_half_read_chain() {
    let mut g = Guest::new();
    g.post(TRANSMIT_QUEUE, &[(MIB as u64, MIB as u32, 0)]);
    let mut out = GuestOutput::default();
    assert_eq!(g.dev.collect(&g.mem, &mut out), OUTPUT_HOLD_MAX);
    out.consume(OUTPUT_HOLD_MAX);
    g.init();
    g.mem.write_slice(b"new", GuestAddress(0x10000)).unwrap();
    g.post(TRANSMIT_QUEUE, &[(0x10000, 3, 0)]);
    assert_eq!(g.dev.collect(&g.mem, &mut out), 3);
    assert_eq!(out.waiting(), b"new");
}

#[test]
fn nothing_moves_before_driver_ok() {
    let g = Guest {
        dev: Arc::new(Console::new(0, 13).unwrap()),
        mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MIB)]).unwrap(),
        next_desc: [0; 2],
        avail_idx: [0; 2],
        used_seen: [0; 2],
    };
    let mut input = HostInput::default();
    input.push(b"x");
    assert_eq!(g.dev.deliver(&g.mem, &mut input), 0);
    assert_eq!(g.dev.collect(&g.mem, &mut GuestOutput::default()), 0);
    assert!(!g.dev.can_receive(&g.mem));
}

#[test]
fn the_channel_thread_moves_bytes_both_ways_with_backpressure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chan.sock");
    let mut g = Guest::new();
    let listener = bind_channel(&path).unwrap();
    let thread = ChannelThread::spawn(g.dev.clone(), listener, g.mem.clone(), None).unwrap();
    let mut client = UnixStream::connect(&path).unwrap();

    // Guest → host.
    g.mem.write_slice(b"pong", GuestAddress(0x10000)).unwrap();
    g.post(TRANSMIT_QUEUE, &[(0x10000, 4, 0)]);
    g.w(reg::QUEUE_NOTIFY, TRANSMIT_QUEUE as u32);
    let mut buf = [0u8; 4];
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");

    // Host → guest with no receive buffer: the VMM reads nothing, so the client's socket fills
    // and its sends would block.
    client.set_nonblocking(true).unwrap();
    let data = pattern(MIB, 3);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.write(&data[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Give the thread a chance to (wrongly) drain the socket, then look again.
                std::thread::sleep(Duration::from_millis(50));
                match client.write(&data[sent..sent + 1]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "the client never blocked");
        assert!(
            sent < data.len(),
            "the VMM took everything with no buffer to put it in"
        );
    }
    assert!(g.used(RECEIVE_QUEUE).is_empty());

    // The guest keeps 4 buffers of 64 KiB posted; every byte sent arrives, in order.
    let mut got = Vec::new();
    let mut outstanding = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < data.len() {
        if sent < data.len()
            && let Ok(n) = client.write(&data[sent..])
        {
            sent += n;
        }
        while outstanding < 4 {
            let slot = u64::from(g.next_desc[RECEIVE_QUEUE]);
            g.post(
                RECEIVE_QUEUE,
                &[(MIB as u64 + slot * 0x10000, 0x10000, F_WRITE)],
            );
            outstanding += 1;
        }
        g.w(reg::QUEUE_NOTIFY, RECEIVE_QUEUE as u32);
        for (head, len) in g.used(RECEIVE_QUEUE) {
            assert!(len as usize <= INPUT_HOLD_MAX);
            got.extend(g.read(MIB as u64 + u64::from(head) * 0x10000, len as usize));
            outstanding -= 1;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} bytes arrived",
            got.len(),
            data.len()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(got == data, "bytes reordered or changed");
    thread.stop();
}

#[test]
fn bytes_of_a_client_that_left_still_reach_the_guest_and_the_next_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chan.sock");
    let mut g = Guest::new();
    let listener = bind_channel(&path).unwrap();
    let thread = ChannelThread::spawn(g.dev.clone(), listener, g.mem.clone(), None).unwrap();
    // A client sends and leaves while the guest has posted nothing.
    let mut first = UnixStream::connect(&path).unwrap();
    first.write_all(b"sent before leaving").unwrap();
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    g.post(RECEIVE_QUEUE, &[(0x20000, 64, F_WRITE)]);
    g.w(reg::QUEUE_NOTIFY, RECEIVE_QUEUE as u32);
    let deadline = Instant::now() + Duration::from_secs(10);
    let used = loop {
        let u = g.used(RECEIVE_QUEUE);
        if !u.is_empty() {
            break u;
        }
        assert!(Instant::now() < deadline, "the bytes never arrived");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(used, vec![(0, 19)]);
    assert_eq!(g.read(0x20000, 19), b"sent before leaving");
    // The slot is free again: a second client gets the guest's output.
    let mut second = UnixStream::connect(&path).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    g.mem.write_slice(b"hi", GuestAddress(0x10000)).unwrap();
    g.post(TRANSMIT_QUEUE, &[(0x10000, 2, 0)]);
    g.w(reg::QUEUE_NOTIFY, TRANSMIT_QUEUE as u32);
    let mut buf = [0u8; 2];
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    thread.stop();
}

/// xorshift64*: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_rings_never_panic_lose_input_or_grow_the_output_past_its_bound() {
    for seed in 1..=300u64 {
        let mut rng = Noise(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut g = Guest::new();
        let mut input = HostInput::default();
        input.push(&pattern(1000, seed as u8));
        let mut out = GuestOutput::default();
        let mut delivered = 0;
        for _round in 0..4 {
            for q in [RECEIVE_QUEUE, TRANSMIT_QUEUE] {
                for i in 0..SIZE {
                    let addr = rng.next() % (8 * MIB as u64);
                    let len = match rng.next() % 4 {
                        0 => rng.next() as u32,
                        _ => (rng.next() % 8192) as u32,
                    };
                    let flags = (rng.next() % 8) as u16;
                    let next = (rng.next() % (u64::from(SIZE) + 4)) as u16;
                    g.desc(q, i, addr, len, flags, next);
                }
                for _ in 0..rng.next() % 6 {
                    let head = (rng.next() % (u64::from(SIZE) + 2)) as u16;
                    g.offer(q, head);
                }
            }
            delivered += g.dev.deliver(&g.mem, &mut input);
            g.dev.collect(&g.mem, &mut out);
            assert!(out.waiting().len() <= OUTPUT_HOLD_MAX, "seed {seed}");
            assert_eq!(delivered + input.len(), 1000, "seed {seed}");
            // Sometimes the host takes the output; sometimes the driver starts over.
            if rng.next().is_multiple_of(2) {
                let n = out.waiting().len();
                out.consume(n);
            }
            if rng.next().is_multiple_of(3) {
                g.init();
            }
        }
    }
}
