//! The virtio-console device (the host channel of a Linux guest) against a fuzzer-written guest:
//! both queues' placement and size, descriptor tables, rings and buffers come from the input,
//! and the calls the `colo-chan` thread makes (host bytes into receive buffers, guest output off
//! the transmit queue) run in an order the input picks (`colo_vmm::fuzzing_console::run`,
//! input layout there).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Panics (lost host input, output past its bound), out-of-bounds accesses and hangs are the
    // findings; the outcome is for unit tests.
    colo_vmm::fuzzing_console::run(data);
});
