//! The VMM's control socket: input arriving in pieces (each piece's length is one input byte)
//! split into lines by `colo_vmm::control::take_lines`, as the VMM's control server does, and
//! each line parsed by `ControlRequest::parse`. A request that parses must print back to a
//! line that parses to itself; every reply must be one line of JSON.
#![no_main]

use colo_vmm::control::{ControlRequest, error_reply, take_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Vec::new();
    let mut rest = data;
    while let Some((n, tail)) = rest.split_first() {
        let n = usize::from(*n).min(tail.len());
        input.extend_from_slice(&tail[..n]);
        rest = &tail[n..];
        let lines = take_lines(&mut input);
        for line in lines.lines.iter().filter(|l| !l.is_empty()) {
            match ControlRequest::parse(line) {
                Ok(req) => assert_eq!(ControlRequest::parse(&req.to_line()).as_ref(), Ok(&req)),
                Err(e) => {
                    let reply = error_reply(&e.to_string());
                    assert!(!reply.contains('\n'), "{reply}");
                    serde_json::from_str::<serde_json::Value>(&reply).expect("JSON");
                }
            }
        }
        if lines.overlong {
            return;
        }
    }
});
