//! Every file in `config/examples/bad/` is refused with exactly the message in its golden file
//! (`config/tests/golden/bad/NAME.txt`), and every message starts with `FILE:LINE:COL`.
//!
//! Regenerate the golden files after an intended wording change with
//! `COLO_UPDATE_GOLDEN=1 cargo test -p colo-config --test bad_examples`, and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use colo_config::{Source, parse_policy};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bad_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(crate_dir().join("examples/bad"))
        .expect("examples/bad exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The errors as `coloctl policy check` prints them when run from the repository root.
fn check_output(path: &Path) -> String {
    let name = format!(
        "config/examples/bad/{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let text = fs::read_to_string(path).expect("readable example");
    match parse_policy(&[Source::new(name.clone(), text)]) {
        Ok(_) => format!("{name}: valid\n"),
        Err(errors) => format!("{errors}\n"),
    }
}

#[test]
fn there_are_at_least_twenty_distinct_mistakes() {
    let files = bad_files();
    assert!(files.len() >= 20, "only {} bad examples", files.len());
    let mut outputs: Vec<String> = files
        .iter()
        .map(|f| {
            // Compare messages without the file name, so two files cannot hold the same mistake.
            let out = check_output(f);
            out.split_once(": ")
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or(out)
        })
        .collect();
    outputs.sort();
    outputs.dedup();
    assert_eq!(
        outputs.len(),
        files.len(),
        "two bad examples give the same error"
    );
}

#[test]
fn every_bad_example_matches_its_golden_file() {
    let update = std::env::var_os("COLO_UPDATE_GOLDEN").is_some();
    let golden_dir = crate_dir().join("tests/golden/bad");
    let mut failures = Vec::new();
    for file in bad_files() {
        let stem = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let actual = check_output(&file);
        let name = format!("config/examples/bad/{stem}.yaml");
        assert!(!actual.ends_with(": valid\n"), "{name} was accepted");
        for line in actual.lines() {
            let rest = line
                .strip_prefix(&format!("{name}:"))
                .unwrap_or_else(|| panic!("{line}"));
            let mut parts = rest.splitn(3, ':');
            let line_no = parts.next().and_then(|l| l.parse::<u64>().ok());
            let col_no = parts.next().and_then(|c| c.parse::<u64>().ok());
            assert!(
                line_no.is_some_and(|l| l >= 1) && col_no.is_some_and(|c| c >= 1),
                "no FILE:LINE:COL in: {line}"
            );
        }
        let golden = golden_dir.join(format!("{stem}.txt"));
        if update {
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
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}
