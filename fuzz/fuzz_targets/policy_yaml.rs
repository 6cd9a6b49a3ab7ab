//! The policy loader: up to four policy files (the input split at NUL bytes), parsed, merged in
//! order over the defaults and validated by `colo_config::parse_policy`, the function
//! `load_policy` and the agent run after reading the files. Every error must render.
#![no_main]

use colo_config::{Source, parse_policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sources = Vec::new();
    for (i, part) in data.split(|b| *b == 0).take(4).enumerate() {
        // Source::read refuses files that are not UTF-8 before any parsing.
        let Ok(text) = std::str::from_utf8(part) else {
            return;
        };
        sources.push(Source::new(format!("policy.d/{i}.yaml"), text));
    }
    match parse_policy(&sources) {
        Ok(policy) => drop(format!("{policy:?}")),
        Err(errors) => drop(errors.to_string()),
    }
});
