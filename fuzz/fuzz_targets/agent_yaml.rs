//! `agent.yaml` loading: `colo_config::parse_agent`, what `load_agent` runs on the file's text
//! (parse, merge over the defaults, validate). Every error must render.
#![no_main]

use colo_config::{Source, parse_agent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Source::read refuses files that are not UTF-8 before any parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_agent(&Source::new("agent.yaml", text)) {
        Ok(config) => drop(format!("{config:?}")),
        Err(errors) => drop(errors.to_string()),
    }
});
