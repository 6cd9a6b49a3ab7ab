//! Every file in `config/examples/bad-agent/` (mistakes in `agent.yaml`) is refused with exactly
//! the message in its golden file (`config/tests/golden/bad-agent/NAME.txt`), located as
//! `FILE:LINE:COL`. `colo-agent --check` prints the same lines (agent/tests/check.rs).
//!
//! Regenerate the golden files after an intended wording change with
//! `COLO_UPDATE_GOLDEN=1 cargo test -p colo-config --test bad_agent_examples`, and review the
//! diff.

use std::fs;
use std::path::PathBuf;

use colo_config::{Source, parse_agent};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_bad_agent_example_matches_its_golden_file() {
    let update = std::env::var_os("COLO_UPDATE_GOLDEN").is_some();
    let mut files: Vec<PathBuf> = fs::read_dir(crate_dir().join("examples/bad-agent"))
        .expect("examples/bad-agent exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "only {} bad agent.yaml examples",
        files.len()
    );
    let golden_dir = crate_dir().join("tests/golden/bad-agent");
    let mut failures = Vec::new();
    let mut messages = Vec::new();
    for file in files {
        let stem = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // Named as from the repository root, as `colo-agent --check` run there names them.
        let name = format!("config/examples/bad-agent/{stem}.yaml");
        let text = fs::read_to_string(&file).expect("readable example");
        let actual = match parse_agent(&Source::new(name.clone(), text)) {
            Ok(_) => panic!("{name} was accepted"),
            Err(errors) => format!("{errors}\n"),
        };
        for line in actual.lines() {
            let rest = line
                .strip_prefix(&format!("{name}:"))
                .unwrap_or_else(|| panic!("{line}"));
            let mut parts = rest.splitn(3, ':');
            let located = parts
                .next()
                .and_then(|l| l.parse::<u64>().ok())
                .is_some_and(|l| l >= 1)
                && parts
                    .next()
                    .and_then(|c| c.parse::<u64>().ok())
                    .is_some_and(|c| c >= 1);
            assert!(located, "no FILE:LINE:COL in: {line}");
        }
        messages.push(
            actual
                .split_once(": ")
                .map(|(_, m)| m.to_owned())
                .unwrap_or_default(),
        );
        let golden = golden_dir.join(format!("{stem}.txt"));
        if update {
            fs::create_dir_all(&golden_dir).expect("golden directory");
            fs::write(&golden, &actual).expect("write golden file");
            continue;
        }
        match fs::read_to_string(&golden) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{stem}:\n  expected: {expected}  actual:   {actual}"
            )),
            Err(_) => failures.push(format!("{stem}: no golden file {}", golden.display())),
        }
    }
    let n = messages.len();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), n, "two bad examples give the same error");
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}
