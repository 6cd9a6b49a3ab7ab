//! `coloctl report-sli`: pushes latency observations of an online service to the agent
//! (`ReportSli`), for services or scripts that measure their own latency (`slo.sli: pushed` in
//! agent.yaml).

use colo_proto::agent as pb;

use super::connect::{ConnectArgs, connect};
use super::{CliError, Done, Output, outln, print_json};

/// Arguments of `coloctl report-sli`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportSliArgs {
    /// The online service, as named in agent.yaml.
    #[arg(long)]
    pub service: String,
    /// Latencies observed since the last report, in microseconds (e.g. `850 1200 930`).
    #[arg(required = true, num_args = 1..)]
    pub latency_us: Vec<u64>,
}

/// Runs `coloctl report-sli`.
pub async fn run(conn: &ConnectArgs, output: Output, a: &ReportSliArgs) -> Result<Done, CliError> {
    let mut client = connect(conn).await?;
    let r = client
        .report_sli(pb::ReportSliRequest {
            service: a.service.clone(),
            latency_us: a.latency_us.clone(),
        })
        .await?
        .into_inner();
    match output {
        Output::Json => print_json(&serde_json::json!({ "accepted": r.accepted }))?,
        Output::Table => outln!("{} latencies accepted for {}", r.accepted, a.service)?,
    }
    Ok(Done::Ok)
}
