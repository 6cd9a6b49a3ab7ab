//! The agent's subsystems import one way: `jobs` and `qos` each import `host` alone, `serve`
//! all three, and the wiring at the root (`daemon.rs`, `offline.rs`, `settings.rs`, `check.rs`,
//! `notify.rs`) everything. This reads every file under `src/` and fails naming the file and
//! the `crate::` path that points the wrong way, so no import circle can form between files of
//! different subsystems.
//!
//! Run alone: `cargo test -p colo-agent --test layering`.

use std::path::{Path, PathBuf};

/// What each subsystem may import from the crate (besides itself and the crate root's items).
const ALLOWED: &[(&str, &[&str])] = &[
    ("host", &[]),
    ("jobs", &["host"]),
    ("qos", &["host"]),
    ("serve", &["host", "jobs", "qos"]),
];

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The first module of each `crate::<module>` path in `text`, comments left out. A `use
/// crate::{a, b}` group names each of its modules.
fn crate_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            out.extend(
                names
                    .into_iter()
                    .filter(|n| n.starts_with(|c: char| c.is_ascii_lowercase()))
                    .map(str::to_owned),
            );
        }
    }
    out
}

#[test]
fn subsystems_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let Some(first) = rel.components().next() else {
            continue;
        };
        let subsystem = first.as_os_str().to_string_lossy();
        let Some((_, allowed)) = ALLOWED.iter().find(|(s, _)| *s == subsystem) else {
            // The wiring at the root and the binaries may use everything.
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(f).unwrap();
        for m in crate_modules(&text) {
            if m != subsystem && !allowed.contains(&m.as_str()) {
                wrong.push(format!("{}: crate::{m}", rel.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} files checked under {}",
        src.display()
    );
    assert!(
        wrong.is_empty(),
        "imports that point the wrong way (allowed: {ALLOWED:?}):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn crate_paths_are_found_in_groups_and_not_in_comments() {
    let text = "use crate::host::cgroup::X;\nuse crate::{jobs::Y, qos};\n// crate::serve\nlet v = crate::AGENT_VERSION;";
    assert_eq!(crate_modules(text), vec!["host", "jobs", "qos"]);
}
