//! `coloctl policy`: check policy files, show the effective policy, print the JSON Schemas.
//!
//! Output goes to the writers passed in, so tests drive the commands without a process.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use colo_config::{ConfigErrors, Source, parse_policy, policy_sources};
use serde::Serialize;

/// `coloctl policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files or directories; exit 0 if all are valid, 1 if any is not.
    ///
    /// Each PATH is checked on its own: a file merged over the defaults, or a directory's
    /// `*.yaml` files merged in lexical order.
    Check(CheckArgs),
    /// Print the effective policy (defaults, then each PATH merged in order) as YAML.
    Show(ShowArgs),
    /// Print the JSON Schema of policy documents (or of `agent.yaml` with `--agent`).
    Schema(SchemaArgs),
}

/// Output format of `policy check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// One line per error, `FILE:LINE:COL: PATH: MESSAGE`.
    Text,
    /// One JSON document for pipelines.
    Json,
}

/// Arguments of `policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files or directories.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = CheckOutput::Text)]
    pub output: CheckOutput,
}

/// Output format of `policy show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowOutput {
    /// YAML, as a policy file.
    Yaml,
    /// JSON.
    Json,
}

/// Arguments of `policy show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Policy files or directories, merged in this order.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = ShowOutput::Yaml)]
    pub output: ShowOutput,
}

/// Arguments of `policy schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The schema of `agent.yaml` instead of the policy's.
    #[arg(long)]
    pub agent: bool,
}

/// The result of checking one PATH.
#[derive(Debug, Serialize)]
struct CheckResult {
    path: String,
    files: Vec<String>,
    valid: bool,
    errors: ConfigErrorsJson,
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct ConfigErrorsJson(Vec<colo_config::ConfigError>);

#[derive(Debug, Serialize)]
struct CheckReport {
    valid: bool,
    results: Vec<CheckResult>,
}

fn check_one(path: &PathBuf) -> CheckResult {
    let (files, outcome): (Vec<String>, Result<(), ConfigErrors>) =
        match policy_sources(std::slice::from_ref(path)) {
            Ok(sources) => (
                sources.iter().map(|s: &Source| s.name.clone()).collect(),
                parse_policy(&sources).map(|_| ()),
            ),
            Err(e) => (Vec::new(), Err(e)),
        };
    let errors = outcome.err().map(|e| e.0).unwrap_or_default();
    CheckResult {
        path: path.display().to_string(),
        files,
        valid: errors.is_empty(),
        errors: ConfigErrorsJson(errors),
    }
}

/// Runs a `coloctl policy` command; returns the process exit code (0 valid, 1 invalid).
pub fn run(cmd: &PolicyCommand, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    match cmd {
        PolicyCommand::Check(args) => {
            let results: Vec<CheckResult> = args.paths.iter().map(check_one).collect();
            let valid = results.iter().all(|r| r.valid);
            match args.output {
                CheckOutput::Text => {
                    for r in &results {
                        if r.valid {
                            writeln!(out, "{}: valid", r.path)?;
                        } else {
                            for e in &r.errors.0 {
                                writeln!(out, "{e}")?;
                            }
                        }
                    }
                }
                CheckOutput::Json => {
                    let report = CheckReport { valid, results };
                    serde_json::to_writer_pretty(&mut *out, &report)?;
                    writeln!(out)?;
                }
            }
            Ok(if valid { 0 } else { 1 })
        }
        PolicyCommand::Show(args) => match colo_config::load_policy(&args.paths) {
            Ok(policy) => {
                match args.output {
                    ShowOutput::Yaml => {
                        let names: Vec<String> = policy_sources(&args.paths)
                            .map(|s| s.into_iter().map(|s| s.name).collect())
                            .unwrap_or_default();
                        writeln!(
                            out,
                            "# Effective colo policy: defaults, then {}",
                            names.join(", ")
                        )?;
                        out.write_all(policy.to_yaml().as_bytes())?;
                    }
                    ShowOutput::Json => {
                        serde_json::to_writer_pretty(&mut *out, &policy)?;
                        writeln!(out)?;
                    }
                }
                Ok(0)
            }
            Err(errors) => {
                writeln!(err, "{errors}")?;
                Ok(1)
            }
        },
        PolicyCommand::Schema(args) => {
            let schema = if args.agent {
                colo_config::schema::agent_schema()
            } else {
                colo_config::schema::policy_schema()
            };
            out.write_all(schema.as_bytes())?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn run_check(paths: Vec<PathBuf>, output: CheckOutput) -> (u8, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(
            &PolicyCommand::Check(CheckArgs { paths, output }),
            &mut out,
            &mut err,
        )
        .unwrap_or(99);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn check_reports_valid_and_invalid_files() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        let bad = dir.path().join("bad.yaml");
        fs::write(&good, "apiVersion: colo/v1\nkind: Policy\n").unwrap();
        fs::write(&bad, "apiVersion: colo/v1\nkind: Policy\nmode: enforse\n").unwrap();

        let (code, text) = run_check(vec![good.clone()], CheckOutput::Text);
        assert_eq!(code, 0, "{text}");
        assert!(text.ends_with(": valid\n"), "{text}");

        let (code, text) = run_check(vec![good, bad.clone()], CheckOutput::Text);
        assert_eq!(code, 1);
        let expected = format!("{}:3:7: mode: unknown value `enforse`", bad.display());
        assert!(text.contains(&expected), "{text}");

        let (code, json) = run_check(vec![bad], CheckOutput::Json);
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["results"][0]["errors"][0]["line"], 3);
        assert_eq!(v["results"][0]["errors"][0]["suggestion"], "enforce");
    }

    #[test]
    fn show_prints_the_merged_policy() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("10-base.yaml"),
            "apiVersion: colo/v1\nkind: Policy\nmode: observe\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("20-mem.yaml"),
            "apiVersion: colo/v1\nkind: Policy\nmemory:\n  stop_at: 70%\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let args = ShowArgs {
            paths: vec![dir.path().to_path_buf()],
            output: ShowOutput::Yaml,
        };
        assert_eq!(
            run(&PolicyCommand::Show(args), &mut out, &mut err).unwrap(),
            0
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("mode: observe"), "{text}");
        assert!(text.contains("stop_at: 70%"), "{text}");
        assert!(text.contains("evict_at: 90%"), "{text}");
    }
}
