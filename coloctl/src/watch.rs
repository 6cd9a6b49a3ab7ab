//! `coloctl watch`: what a job runs (its sandbox, once), then its state changes (and serial
//! lines) live, with a spinner on a terminal while it runs.

use std::time::Duration;

use colo_proto::agent as pb;
use colo_proto::agent::agent_client::AgentClient;
use indicatif::{ProgressBar, ProgressStyle};
use tonic::transport::Channel;

use super::connect::{ConnectArgs, connect};
use super::json::{reason_name, state_name};
use super::{CliError, Done, Output, outln};

/// `coloctl watch` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// The job.
    pub id: String,
    /// Also print the guest's serial console.
    #[arg(long)]
    pub serial: bool,
}

fn spinner() -> ProgressBar {
    // Hidden automatically when stderr is not a terminal.
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn describe(j: &pb::Job) -> String {
    let mut s = format!("{} {}", j.id, state_name(j.state));
    let r = reason_name(j.end_reason);
    if !r.is_empty() {
        s.push_str(&format!(" ({r})"));
    }
    if let Some(c) = j.exit_code {
        s.push_str(&format!(" exit={c}"));
    }
    if !j.message.is_empty() {
        s.push_str(&format!(": {}", j.message));
    }
    s
}

/// Follows a job to its end, printing each state (and serial line); returns whether it
/// succeeded.
pub async fn follow(
    client: &mut AgentClient<Channel>,
    id: &str,
    serial: bool,
    output: Output,
) -> Result<Done, CliError> {
    let mut stream = client
        .watch_job(pb::WatchJobRequest {
            id: id.into(),
            serial,
        })
        .await?
        .into_inner();
    let bar = (output == Output::Table).then(spinner);
    let mut last: Option<pb::Job> = None;
    while let Some(ev) = stream.message().await? {
        match ev.event {
            Some(pb::job_event::Event::State(j)) => {
                match output {
                    Output::Json => {
                        outln!("{}", serde_json::json!({"state": super::json::job(&j)}))?
                    }
                    Output::Table => {
                        let mut line = describe(&j);
                        if last.is_none()
                            && let Some(spec) = &j.spec
                        {
                            // The first state says what runs, once.
                            line = format!("{} {}\n{line}", j.id, super::sandbox::summary(spec));
                        }
                        if let Some(b) = &bar {
                            b.println(&line);
                            b.set_message(format!("{} {}", j.id, state_name(j.state)));
                        }
                        if bar.as_ref().is_none_or(|b| b.is_hidden()) {
                            outln!("{line}")?;
                        }
                    }
                }
                last = Some(j);
            }
            Some(pb::job_event::Event::SerialLine(l)) => match output {
                Output::Json => outln!("{}", serde_json::json!({"serial": l}))?,
                Output::Table => match &bar {
                    Some(b) if !b.is_hidden() => b.println(format!("| {l}")),
                    _ => outln!("| {l}")?,
                },
            },
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let last = last.ok_or_else(|| CliError::Local("the agent sent no state".into()))?;
    if !pb::JobState::try_from(last.state).is_ok_and(|s| s.is_terminal()) {
        return Err(CliError::Local(format!(
            "the watch ended before job {id} did (the agent is stopping?); it was {}",
            state_name(last.state)
        )));
    }
    Ok(if last.state == pb::JobState::Succeeded as i32 {
        Done::Ok
    } else {
        Done::JobFailed
    })
}

/// Runs `coloctl watch`.
pub async fn run(conn: &ConnectArgs, output: Output, args: &WatchArgs) -> Result<Done, CliError> {
    let mut client = connect(conn).await?;
    follow(&mut client, &args.id, args.serial, output).await
}
