//! Kubernetes resource quantities: `colo_scheduler::k8s::Quantity::parse`, which the extender
//! runs on every request and limit of a pod, then the two reductions placement uses.
#![no_main]

use colo_scheduler::k8s::Quantity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match Quantity::parse(s) {
        Ok(q) => {
            let (v, m) = (q.value(), q.milli_value());
            // Whole units rounded up never exceed thousandths rounded up (both saturate).
            assert!(v <= m || m == u64::MAX, "{s:?}: value {v} > milli {m}");
        }
        Err(e) => drop(e.to_string()),
    }
});
