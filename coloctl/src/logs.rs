//! `coloctl logs`: a job's serial console (a Linux guest's program: its output), or its VMM's
//! files, optionally followed.

use std::io::Write;

use colo_proto::agent as pb;

use super::connect::{ConnectArgs, connect};
use super::{CliError, Done};

/// `coloctl logs` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The job.
    pub id: String,
    /// Keep printing until the job ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The VMM's output and log instead of the guest's serial console (for a program in a
    /// Linux guest: instead of its output, and with the guest's console).
    #[arg(long)]
    pub vmm: bool,
}

/// Runs `coloctl logs`.
pub async fn run(conn: &ConnectArgs, args: &LogsArgs) -> Result<Done, CliError> {
    let mut client = connect(conn).await?;
    let source = if args.vmm {
        pb::LogSource::Vmm
    } else {
        pb::LogSource::Serial
    };
    let mut stream = client
        .get_job_logs(pb::GetJobLogsRequest {
            id: args.id.clone(),
            source: source as i32,
            follow: args.follow,
        })
        .await?
        .into_inner();
    let stdout = std::io::stdout();
    while let Some(chunk) = stream.message().await? {
        let mut out = stdout.lock();
        out.write_all(&chunk.data)
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)?;
    }
    Ok(Done::Ok)
}
