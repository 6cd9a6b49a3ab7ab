//! `coloctl`, colo's command-line client: one module per subcommand; `main.rs` assembles them
//! with clap. It speaks to the agent through the gRPC contracts of colo-proto and reads job and
//! policy files through colo-config; it links nothing of the agent.
//!
//! Exit status: 0 success; 1 a job watched to its end did not succeed; 2 usage error; 3 the
//! agent refused the request or could not be reached.
//!
//! Output goes through `outln!` / [`out`], never `println!`: a reader that goes away
//! (`coloctl node | head -3`) ends coloctl quietly with status 0 instead of a panic.

pub mod connect;
pub mod jobs;
pub mod json;
pub mod logs;
pub mod node;
pub mod policy;
pub mod policy_reload;
pub mod sandbox;
pub mod sli;
pub mod submit;
pub mod table;
pub mod watch;
pub mod yarn;

use std::io::Write;
use std::process::ExitCode;

/// The `--output` flag of the commands that talk to the agent.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human tables.
    Table,
    /// JSON (one document per command; one line per event for `watch`).
    Json,
}

/// A coloctl failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The agent could not be reached.
    #[error("cannot reach the agent at {target}: {message}")]
    Connect {
        /// Socket or endpoint.
        target: String,
        /// Why, said once.
        message: String,
        /// What to check (printed on its own line after the error).
        hint: Option<String>,
    },
    /// The agent answered with an error.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] tonic::Status),
    /// A local problem (job file, arguments, output).
    #[error("{0}")]
    Local(String),
    /// Whoever read coloctl's output has gone (a closed pipe): nothing more is worth saying.
    #[error("stdout is closed")]
    StdoutClosed,
}

impl CliError {
    /// A failed write to stdout: [`CliError::StdoutClosed`] for a closed pipe.
    pub fn stdout(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self::StdoutClosed
        } else {
            Self::Local(format!("cannot write to stdout: {e}"))
        }
    }
}

/// Writes to stdout (and flushes): the one way coloctl prints its results.
pub fn out(text: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(text)
        .and_then(|()| o.flush())
        .map_err(CliError::stdout)
}

/// `println!` for coloctl's results: returns `Result<(), CliError>` instead of panicking on a
/// closed stdout.
macro_rules! outln {
    () => {
        $crate::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Writes a line to stderr; a closed stderr is ignored (there is nowhere left to complain).
pub fn note(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn code_name(c: tonic::Code) -> &'static str {
    match c {
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::NotFound => "not found",
        tonic::Code::ResourceExhausted => "rejected",
        tonic::Code::AlreadyExists => "conflict",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        _ => "error",
    }
}

/// What a subcommand ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Exit 0.
    Ok,
    /// Exit 1: the job watched did not succeed.
    JobFailed,
}

impl CliError {
    /// What the operator might check, for errors where coloctl can tell.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Self::Connect { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}

/// Turns a subcommand's result into the process exit status, printing errors (and a hint on
/// the next line, where there is one).
pub fn exit(r: Result<Done, CliError>) -> ExitCode {
    match r {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::JobFailed) => ExitCode::from(1),
        Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            note(format_args!("coloctl: {e}"));
            if let Some(h) = e.hint() {
                note(format_args!("hint: {h}"));
            }
            ExitCode::from(3)
        }
    }
}

/// Prints JSON to stdout.
pub fn print_json(v: &serde_json::Value) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Local(e.to_string()))?;
    outln!("{s}")
}
