//! `COLO_VMM_TRACE=1`: the time of each start phase on stderr.

use std::time::Instant;

/// Prints start phases to stderr when `COLO_VMM_TRACE=1` (to find where start time goes).
#[derive(Debug, Clone, Copy)]
pub(super) struct StartTrace {
    on: bool,
    t0: Instant,
}

impl StartTrace {
    pub(super) fn new() -> Self {
        Self {
            on: std::env::var_os("COLO_VMM_TRACE").is_some_and(|v| v == "1"),
            t0: Instant::now(),
        }
    }
    pub(super) fn mark(&self, what: &str) {
        if self.on {
            let us = self.t0.elapsed().as_micros();
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("colo-vmm: trace {us:>7} us {what}\n").as_bytes(),
            );
        }
    }
}
