//! The virtio-blk device against a fuzzer-written guest: ring placement and size, descriptor
//! table, headers and buffers all come from the input, and `Disk::process_queue` (what the
//! `colo-io` thread runs) serves the queue (`colo_vmm::fuzzing::run`, input layout there).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Panics, out-of-bounds accesses and hangs are the findings; the outcome is for unit tests.
    colo_vmm::fuzzing::run(data);
});
