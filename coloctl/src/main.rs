//! `coloctl`: the command-line client of colo. See docs/agent.md and docs/policy.md.

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coloctl::policy::PolicyCommand;
use coloctl::{CliError, Done, OutputArgs};

/// colo's command-line client: submit and follow offline jobs, inspect the node, check
/// policies.
#[derive(Debug, Parser)]
#[command(name = "coloctl", version = env!("CARGO_PKG_VERSION"), propagate_version = true)]
struct Cli {
    #[command(flatten)]
    conn: coloctl::connect::ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit a job (from a job file and/or flags).
    Submit {
        #[command(flatten)]
        args: Box<coloctl::submit::SubmitArgs>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List jobs.
    List {
        #[command(flatten)]
        args: coloctl::jobs::ListArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show one job.
    Get {
        /// The job.
        id: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Follow a job's state (and serial console) until it ends; exit 1 unless it succeeded.
    Watch {
        #[command(flatten)]
        args: coloctl::watch::WatchArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Print a job's serial console (or VMM log).
    Logs(coloctl::logs::LogsArgs),
    /// Cancel a job.
    Cancel {
        /// The job.
        id: String,
        /// Why (recorded with the job).
        #[arg(long, default_value = "cancelled with coloctl")]
        reason: String,
        /// Wait until it has ended.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show the node: budget, jobs, and the throttle state of each VM and why.
    Node {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Push latency observations of an online service (`slo.sli: pushed`) to the agent.
    ReportSli {
        #[command(flatten)]
        args: coloctl::sli::ReportSliArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Check and show policy files; make the agent reload its policy.
    #[command(subcommand)]
    Policy(PolicyCli),
    /// YARN node attributes script: `NODE_ATTRIBUTE:colo_interference,STRING,low` and the batch
    /// budget, one attribute a line; exits 0 (`unknown` when the agent is down).
    NodeAttributes(coloctl::yarn::NodeAttributesArgs),
    /// YARN health script: one line, starting `ERROR` while the node refuses batch work;
    /// exits 0. An agent that is down leaves the node healthy unless --unhealthy-when-down.
    HealthCheck(coloctl::yarn::HealthCheckArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCli {
    #[command(flatten)]
    Files(PolicyCommand),
    /// Make the agent re-read its policy (as SIGHUP does); an invalid one is refused and the
    /// old one kept.
    Reload {
        #[command(flatten)]
        out: OutputArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Policy(PolicyCli::Files(cmd)) = &cli.command {
        return match coloctl::policy::run(cmd, &mut io::stdout().lock(), &mut io::stderr().lock()) {
            Ok(code) => ExitCode::from(code),
            // Writing to a closed pipe (`coloctl policy show | head`) is not worth a message.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(0),
            Err(e) => {
                coloctl::note(format_args!("coloctl: {e}"));
                ExitCode::from(2)
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            coloctl::note(format_args!("coloctl: cannot start: {e}"));
            return ExitCode::from(3);
        }
    };
    coloctl::exit(rt.block_on(dispatch(cli)))
}

async fn dispatch(cli: Cli) -> Result<Done, CliError> {
    let conn = &cli.conn;
    match &cli.command {
        Command::Submit { args, out } => coloctl::submit::run(conn, out.output, args).await,
        Command::List { args, out } => coloctl::jobs::list(conn, out.output, args).await,
        Command::Get { id, out } => coloctl::jobs::get(conn, out.output, id).await,
        Command::Watch { args, out } => coloctl::watch::run(conn, out.output, args).await,
        Command::Logs(a) => coloctl::logs::run(conn, a).await,
        Command::Cancel {
            id,
            reason,
            wait,
            out,
        } => coloctl::jobs::cancel(conn, out.output, id, reason, *wait).await,
        Command::Node { out } => coloctl::node::run(conn, out.output).await,
        Command::ReportSli { args, out } => coloctl::sli::run(conn, out.output, args).await,
        Command::Policy(PolicyCli::Reload { out }) => {
            coloctl::policy_reload::run(conn, out.output).await
        }
        Command::Policy(PolicyCli::Files(_)) => Ok(Done::Ok),
        Command::NodeAttributes(a) => coloctl::yarn::node_attributes(conn, a).await,
        Command::HealthCheck(a) => coloctl::yarn::health_check(conn, a).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashing flag names between global and subcommand arguments.
        super::Cli::command().debug_assert();
    }
}
