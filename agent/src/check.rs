//! `colo-agent --check`: reads `agent.yaml` and every policy file it names exactly as a start
//! would (a missing `agent.yaml` means the defaults, policy paths that do not exist are
//! skipped), without starting anything: no cgroup, socket, lock or file is touched. Every
//! mistake is one line, `FILE:LINE:COL: message`, on stderr.
//!
//! Exit status: 0 when the agent would start with these files, [`EX_CONFIG`] (78) when not —
//! the status the agent itself exits with on a bad configuration, which the systemd unit's
//! `RestartPreventExitStatus=78` does not restart.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use colo_config::AgentConfig;

/// `EX_CONFIG` of sysexits.h: a configuration error.
pub const EX_CONFIG: u8 = 78;

/// What a check found.
#[derive(Debug)]
pub struct CheckReport {
    /// What was read and found good, for stdout (one line each).
    pub notes: Vec<String>,
    /// The mistakes, `FILE:LINE:COL: message` each; empty when the files are good.
    pub errors: Vec<String>,
}

impl CheckReport {
    /// The exit status: 0, or [`EX_CONFIG`] when there are errors.
    #[must_use]
    pub fn status(&self) -> u8 {
        if self.errors.is_empty() { 0 } else { EX_CONFIG }
    }
}

/// Checks `config` (agent.yaml) and the policy it names.
#[must_use]
pub fn check(config: &Path) -> CheckReport {
    let mut notes = Vec::new();
    let lines = |e: colo_config::ConfigErrors| -> Vec<String> {
        e.errors().iter().map(ToString::to_string).collect()
    };
    let agent = if config.exists() {
        match colo_config::load_agent(config) {
            Ok(a) => {
                notes.push(format!("{}: ok", config.display()));
                a
            }
            Err(e) => {
                return CheckReport {
                    notes,
                    errors: lines(e),
                };
            }
        }
    } else {
        notes.push(format!(
            "{}: not found; colo-agent starts with every default",
            config.display()
        ));
        AgentConfig::default()
    };
    let paths: &[PathBuf] = &agent.policy.paths;
    for p in paths.iter().filter(|p| !p.exists()) {
        notes.push(format!(
            "{}: not found; skipped, as the agent skips it (policy.paths of {})",
            p.display(),
            config.display()
        ));
    }
    match crate::qos::policy_store::load(paths) {
        Ok(p) if p.files.is_empty() => notes.push(format!(
            "policy: none of policy.paths exists; the built-in default policy, mode {}",
            p.mode
        )),
        Ok(p) => notes.push(format!(
            "policy: ok, mode {}, hash {}, from {}",
            p.mode,
            p.hash,
            p.files.join(", ")
        )),
        Err(e) => {
            return CheckReport {
                notes,
                errors: lines(e),
            };
        }
    }
    CheckReport {
        notes,
        errors: Vec::new(),
    }
}

/// Runs the check and prints it: notes to `out`, errors to `err` (then one summary line).
/// Returns the exit status.
pub fn run(config: &Path, out: &mut impl Write, err: &mut impl Write) -> io::Result<u8> {
    let report = check(config);
    for n in &report.notes {
        writeln!(out, "{n}")?;
    }
    for e in &report.errors {
        writeln!(err, "{e}")?;
    }
    if !report.errors.is_empty() {
        let n = report.errors.len();
        writeln!(
            err,
            "colo-agent --check: {n} error{}; colo-agent would not start (exit {EX_CONFIG})",
            if n == 1 { "" } else { "s" }
        )?;
    }
    Ok(report.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn good_files_pass_and_say_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let policy = write(
            dir.path(),
            "policy.yaml",
            "apiVersion: colo/v1\nkind: Policy\nmode: observe\n",
        );
        let missing = dir.path().join("policy.d");
        let agent = write(
            dir.path(),
            "agent.yaml",
            &format!(
                "policy:\n  paths: [{}, {}]\n",
                policy.display(),
                missing.display()
            ),
        );
        let r = check(&agent);
        assert_eq!(r.status(), 0, "{r:?}");
        assert!(r.notes[0].ends_with("agent.yaml: ok"), "{r:?}");
        assert!(r.notes.iter().any(|n| n.contains("policy.d: not found")));
        assert!(
            r.notes
                .iter()
                .any(|n| n.starts_with("policy: ok, mode observe"))
        );
    }

    #[test]
    fn mistakes_are_located_and_exit_78() {
        let dir = tempfile::tempdir().unwrap();
        let agent = write(dir.path(), "agent.yaml", "schedular:\n  endpoint: x\n");
        let r = check(&agent);
        assert_eq!(r.status(), EX_CONFIG);
        let first = &r.errors[0];
        assert!(
            first.starts_with(&format!("{}:1:1: ", agent.display())),
            "{first}"
        );
        // A good agent.yaml naming a bad policy: the policy file's location.
        let policy = write(
            dir.path(),
            "policy.yaml",
            "apiVersion: colo/v1\nkind: Policy\nmode: sometimes\n",
        );
        let agent = write(
            dir.path(),
            "agent.yaml",
            &format!("policy:\n  paths: [{}]\n", policy.display()),
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&agent, &mut out, &mut err).unwrap(), EX_CONFIG);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with(&format!("{}:3:7: mode: ", policy.display())),
            "{err}"
        );
        assert!(
            err.ends_with("colo-agent would not start (exit 78)\n"),
            "{err}"
        );
    }
}
