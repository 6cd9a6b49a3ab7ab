//! `coloctl`: the command-line client of colo.

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use colo_agent::cli::policy::PolicyCommand;

/// colo's command-line client.
#[derive(Debug, Parser)]
#[command(name = "coloctl", version = colo_agent::AGENT_VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check and show policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Policy(cmd) => {
            colo_agent::cli::policy::run(cmd, &mut io::stdout().lock(), &mut io::stderr().lock())
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Writing to a closed pipe (`coloctl policy show | head`) is not worth a message.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(0),
        Err(e) => {
            eprintln!("coloctl: {e}");
            ExitCode::from(2)
        }
    }
}
