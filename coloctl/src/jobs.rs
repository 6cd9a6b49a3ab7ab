//! `coloctl list`, `get` and `cancel`.

use colo_proto::agent as pb;

use super::connect::{ConnectArgs, connect};
use super::json::{reason_name, state_name};
use super::table::{age, bytes, render};
use super::{CliError, Done, Output, outln, print_json};

/// `coloctl list` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only jobs in this state (repeatable): pending, starting, running, paused, succeeded,
    /// failed, cancelled, preempted.
    #[arg(long)]
    pub state: Vec<String>,
    /// Only jobs with this label `KEY=VALUE` (repeatable).
    #[arg(long)]
    pub label: Vec<String>,
}

fn parse_state(s: &str) -> Result<i32, CliError> {
    let name = format!("JOB_STATE_{}", s.to_uppercase());
    pb::JobState::from_str_name(&name)
        .filter(|s| *s != pb::JobState::Unspecified)
        .map(|s| s as i32)
        .ok_or_else(|| CliError::Local(format!("unknown state {s:?} (pending, starting, running, paused, succeeded, failed, cancelled, preempted)")))
}

/// Milliseconds since the Unix epoch (ages in the tables).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One table row of a job.
pub fn row(j: &pb::Job) -> Vec<String> {
    let spec = j.spec.clone().unwrap_or_default();
    let end = if j.ended_unix_ms > 0 {
        j.ended_unix_ms
    } else {
        now_ms()
    };
    let run = if j.started_unix_ms > 0 {
        age(end - j.started_unix_ms)
    } else {
        "-".into()
    };
    vec![
        j.id.clone(),
        if spec.name.is_empty() {
            "-".into()
        } else {
            spec.name.clone()
        },
        super::sandbox::kind_name(&spec).to_string(),
        state_name(j.state),
        match reason_name(j.end_reason) {
            r if r.is_empty() => "-".into(),
            r => r,
        },
        j.exit_code.map_or("-".into(), |c| c.to_string()),
        spec.vcpus.to_string(),
        bytes(spec.memory_mib << 20),
        age(now_ms() - j.created_unix_ms),
        run,
    ]
}

/// The list header.
pub const HEADER: &[&str] = &[
    "ID", "NAME", "SANDBOX", "STATE", "REASON", "EXIT", "VCPUS", "MEMORY", "AGE", "RAN",
];

/// Runs `coloctl list`.
pub async fn list(conn: &ConnectArgs, output: Output, args: &ListArgs) -> Result<Done, CliError> {
    let mut req = pb::ListJobsRequest::default();
    for s in &args.state {
        req.states.push(parse_state(s)?);
    }
    for l in &args.label {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| CliError::Local(format!("--label {l:?}: expected KEY=VALUE")))?;
        req.labels.insert(k.into(), v.into());
    }
    let mut client = connect(conn).await?;
    let jobs = client.list_jobs(req).await?.into_inner().jobs;
    match output {
        Output::Json => print_json(&serde_json::Value::Array(
            jobs.iter().map(super::json::job).collect(),
        ))?,
        Output::Table => {
            let rows: Vec<Vec<String>> = jobs.iter().map(row).collect();
            super::out(format_args!("{}", render(HEADER, &rows)))?;
        }
    }
    Ok(Done::Ok)
}

/// Prints one job in detail.
pub fn print_job(j: &pb::Job) -> Result<(), CliError> {
    let spec = j.spec.clone().unwrap_or_default();
    let mut lines = vec![
        ("id", j.id.clone()),
        ("name", spec.name.clone()),
        ("key", spec.idempotency_key.clone()),
        ("state", state_name(j.state)),
        ("end reason", reason_name(j.end_reason)),
        (
            "exit code",
            j.exit_code.map_or(String::new(), |c| c.to_string()),
        ),
        ("message", j.message.clone()),
        ("sandbox", super::sandbox::summary(&spec)),
        ("vcpus", spec.vcpus.to_string()),
        ("memory", bytes(spec.memory_mib << 20)),
        (
            "vmm pid",
            if j.vmm_pid > 0 {
                j.vmm_pid.to_string()
            } else {
                String::new()
            },
        ),
        ("cpu seconds", format!("{:.3}", j.cpu_seconds)),
        ("progress", j.progress.to_string()),
        ("age", age(now_ms() - j.created_unix_ms)),
    ];
    lines.extend(super::sandbox::details(&spec));
    for d in &spec.disks {
        lines.push((
            "disk",
            format!("{}{}", d.path, if d.read_only { " (ro)" } else { "" }),
        ));
    }
    for (k, v) in &spec.labels {
        lines.push(("label", format!("{k}={v}")));
    }
    if let Some(t) = &j.throttle
        && !t.reason.is_empty()
    {
        lines.push((
            "throttle",
            format!("{} ({})", super::node::throttle_summary(t), t.reason),
        ));
    }
    for (k, v) in lines {
        if !v.is_empty() {
            outln!("{:<12} {v}", format!("{k}:"))?;
        }
    }
    Ok(())
}

/// Runs `coloctl get`.
pub async fn get(conn: &ConnectArgs, output: Output, id: &str) -> Result<Done, CliError> {
    let mut client = connect(conn).await?;
    let j = client
        .get_job(pb::GetJobRequest { id: id.into() })
        .await?
        .into_inner();
    match output {
        Output::Json => print_json(&super::json::job(&j))?,
        Output::Table => print_job(&j)?,
    }
    Ok(Done::Ok)
}

/// Runs `coloctl cancel`.
pub async fn cancel(
    conn: &ConnectArgs,
    output: Output,
    id: &str,
    reason: &str,
    wait: bool,
) -> Result<Done, CliError> {
    let mut client = connect(conn).await?;
    let j = client
        .cancel_job(pb::CancelJobRequest {
            id: id.into(),
            reason: reason.into(),
        })
        .await?
        .into_inner();
    if wait {
        super::watch::follow(&mut client, id, false, output).await?;
        return Ok(Done::Ok);
    }
    match output {
        Output::Json => print_json(&super::json::job(&j))?,
        Output::Table => outln!("cancelling {} ({})", j.id, state_name(j.state))?,
    }
    Ok(Done::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_by_name() {
        assert_eq!(
            parse_state("running").unwrap(),
            pb::JobState::Running as i32
        );
        assert!(parse_state("unspecified").is_err());
        assert!(parse_state("bogus").is_err());
        let j = pb::Job {
            id: "j-1".into(),
            state: pb::JobState::Failed as i32,
            end_reason: pb::EndReason::GuestExitNonzero as i32,
            exit_code: Some(3),
            ..Default::default()
        };
        let r = row(&j);
        assert_eq!(
            &r[2..6],
            &[
                "-".to_string(),
                "failed".into(),
                "guest_exit_nonzero".into(),
                "3".into()
            ]
        );
        let j = pb::Job {
            spec: Some(pb::JobSpec {
                sandbox: Some(pb::job_spec::Sandbox::Container(Default::default())),
                ..Default::default()
            }),
            ..j
        };
        assert_eq!(row(&j)[2], "container");
    }
}
