//! `coloctl submit`: a job from a file and/or flags; `--wait` follows it to its end.

use std::path::PathBuf;

use colo_config::job::{DiskSpec, Guest, JobFile, QosClass};
use colo_proto::agent as pb;

use super::connect::{ConnectArgs, connect};
use super::sandbox::SandboxArgs;
use super::{CliError, Done, Output, outln, print_json};

/// `coloctl submit` flags (they override the job file's fields).
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// Job file (YAML; see docs/agent.md). `-` reads stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Idempotency key (default: made up and printed).
    #[arg(long)]
    pub key: Option<String>,
    /// Job name.
    #[arg(long)]
    pub name: Option<String>,
    /// vCPUs.
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Guest memory in MiB.
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// The sandbox and its settings.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// A disk: `PATH[,ro][,bw=RATE][,iops=N]` (repeatable); RATE as `64MiB/s` or bytes per
    /// second.
    #[arg(long)]
    pub disk: Vec<String>,
    /// QoS class: batch or mid.
    #[arg(long)]
    pub qos_class: Option<String>,
    /// Priority (higher is evicted later).
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// A label `KEY=VALUE` (repeatable).
    #[arg(long)]
    pub label: Vec<String>,
    /// Deadline from start (`90s`, `1h30m`, `1.5h`: colo's duration grammar).
    #[arg(long)]
    pub deadline: Option<String>,
    /// Wait for the job to end (spinner on a terminal); exit 1 unless it succeeded.
    #[arg(long)]
    pub wait: bool,
}

fn parse_disk(s: &str) -> Result<DiskSpec, CliError> {
    let mut parts = s.split(',');
    let mut d = DiskSpec {
        path: parts.next().unwrap_or_default().into(),
        ..Default::default()
    };
    for p in parts {
        let bad = || {
            CliError::Local(format!(
                "--disk {s:?}: expected PATH[,ro][,bw=RATE][,iops=N], RATE as `64MiB/s` or bytes \
                 per second"
            ))
        };
        match p.split_once('=') {
            None if p == "ro" => d.read_only = true,
            Some(("bw", v)) => {
                d.bandwidth_bps = match v.parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => v
                        .parse::<colo_config::units::ByteRate>()
                        .map_err(|e| CliError::Local(format!("--disk {s:?}: bw: {e}")))?
                        .bytes_per_sec(),
                }
            }
            Some(("iops", v)) => d.iops = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    Ok(d)
}

fn local(e: impl std::fmt::Display) -> CliError {
    CliError::Local(e.to_string())
}

/// Reads the job file named by `-f`, if any.
fn job_file(args: &SubmitArgs) -> Result<JobFile, CliError> {
    match &args.file {
        Some(p) if p.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| CliError::Local(format!("stdin: {e}")))?;
            JobFile::parse("stdin", &text).map_err(local)
        }
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::Local(format!("cannot read {}: {e}", p.display())))?;
            JobFile::parse(&p.display().to_string(), &text).map_err(local)
        }
        None => Ok(JobFile::default()),
    }
}

/// Builds the spec from the file and flags, as it goes on the wire.
pub fn spec(args: &SubmitArgs) -> Result<pb::JobSpec, CliError> {
    let mut spec = job_file(args)?.to_spec().map_err(local)?;
    if let Some(k) = &args.key {
        spec.idempotency_key = k.clone();
    }
    if spec.idempotency_key.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        spec.idempotency_key = format!("coloctl-{}-{now:x}-{}", host.trim(), std::process::id());
    }
    if let Some(n) = &args.name {
        spec.name = n.clone();
    }
    if let Some(v) = args.vcpus {
        spec.vcpus = v;
    }
    if let Some(m) = args.memory_mib {
        spec.memory_mib = m;
    }
    spec.guest = args.sandbox.apply(spec.guest)?;
    if !args.disk.is_empty() && matches!(spec.guest, Guest::Container(_)) {
        return Err(CliError::Local(
            "--disk does not go with the container sandbox: a container takes host directories \
             as --volume SRC:DST[:ro]"
                .into(),
        ));
    }
    for d in &args.disk {
        spec.disks.push(parse_disk(d)?);
    }
    if let Some(q) = &args.qos_class {
        spec.qos_class = QosClass::from_name(q).map_err(local)?;
    }
    if let Some(p) = args.priority {
        spec.priority = p;
    }
    for l in &args.label {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| CliError::Local(format!("--label {l:?}: expected KEY=VALUE")))?;
        spec.labels.insert(k.to_string(), v.to_string());
    }
    if let Some(d) = &args.deadline {
        spec.deadline_seconds = colo_config::units::parse_duration(d)
            .map_err(|e| CliError::Local(format!("--deadline: {e}")))?
            .as_secs();
    }
    Ok(pb::JobSpec::from(&spec))
}

/// Runs `coloctl submit`.
pub async fn run(conn: &ConnectArgs, output: Output, args: &SubmitArgs) -> Result<Done, CliError> {
    let spec = spec(args)?;
    let mut client = connect(conn).await?;
    let resp = client
        .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
        .await?
        .into_inner();
    let job = resp
        .job
        .ok_or_else(|| CliError::Local("the agent answered without a job".into()))?;
    if args.wait {
        if output == Output::Table {
            super::note(format_args!(
                "{} job {} (key {})",
                if resp.existing {
                    "existing"
                } else {
                    "submitted"
                },
                job.id,
                job.spec
                    .as_ref()
                    .map(|s| s.idempotency_key.as_str())
                    .unwrap_or("")
            ));
        }
        return super::watch::follow(&mut client, &job.id, false, output).await;
    }
    match output {
        Output::Json => {
            let mut v = super::json::job(&job);
            v["existing"] = resp.existing.into();
            print_json(&v)?;
        }
        Output::Table => {
            outln!(
                "{} {} ({}; key {})",
                if resp.existing {
                    "existing"
                } else {
                    "submitted"
                },
                job.id,
                super::json::state_name(job.state),
                job.spec
                    .as_ref()
                    .map(|s| s.idempotency_key.as_str())
                    .unwrap_or("")
            )?;
        }
    }
    Ok(Done::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: SubmitArgs,
    }

    #[test]
    fn flags_build_a_workload_spec() {
        let t = T::parse_from([
            "x",
            "--key",
            "k",
            "--vcpus",
            "2",
            "--cpu-units",
            "9",
            "--exit-code",
            "4",
            "--label",
            "a=b",
            "--disk",
            "/d.img,ro,bw=10",
            "--disk",
            "/e.img,bw=1.5MiB/s",
            "--deadline",
            "1m30s",
            "--priority",
            "-3",
        ]);
        let s = spec(&t.s).unwrap();
        assert_eq!(s.idempotency_key, "k");
        assert_eq!(s.vcpus, 2);
        assert_eq!(s.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(s.disks[0].bandwidth_bps, 10);
        assert!(s.disks[0].read_only);
        assert_eq!(s.disks[1].bandwidth_bps, 3 << 19);
        assert_eq!(s.deadline_seconds, 90);
        assert_eq!(s.priority, -3);
        match s.sandbox {
            Some(pb::job_spec::Sandbox::Workload(w)) => {
                assert_eq!((w.cpu_units, w.exit_code), (9, 4))
            }
            other => panic!("{other:?}"),
        }
        let t = T::parse_from(["x"]);
        assert!(spec(&t.s).unwrap().idempotency_key.starts_with("coloctl-"));
        assert!(parse_disk("/d,zz").is_err());
    }

    #[test]
    fn flags_complete_a_job_files_container() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job.yaml");
        std::fs::write(
            &file,
            "key: sort-1\ncontainer: {image: /img/bb, command: sort, volumes: [{source: /d/in, target: /in, read_only: true}]}\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let t = T::parse_from([
            "x",
            "-f",
            f,
            "--volume",
            "/d/out:/out",
            "--",
            "sort",
            "-o",
            "/out/s",
            "/in/f",
        ]);
        let s = spec(&t.s).unwrap();
        assert_eq!(s.idempotency_key, "sort-1");
        let Some(pb::job_spec::Sandbox::Container(c)) = s.sandbox else {
            panic!("{s:?}")
        };
        assert_eq!(c.image, "/img/bb");
        assert_eq!(c.args, ["-o", "/out/s", "/in/f"]);
        assert_eq!(c.volumes.len(), 2);
        assert!(c.volumes[0].read_only && !c.volumes[1].read_only);
        // The file's container cannot take a disk, nor a workload flag.
        let t = T::parse_from(["x", "-f", f, "--disk", "/d.img"]);
        let e = spec(&t.s).unwrap_err().to_string();
        assert!(
            e.starts_with("--disk does not go with the container sandbox"),
            "{e}"
        );
        let t = T::parse_from(["x", "--disk", "/d.img", "--image", "/img/bb"]);
        assert!(spec(&t.s).is_err());
        let t = T::parse_from(["x", "--exit-code", "3", "--image", "/img/bb"]);
        let e = spec(&t.s).unwrap_err().to_string();
        assert!(
            e.starts_with("--exit-code and --image ask for different sandboxes"),
            "{e}"
        );
        // A workload flag replaces the file's container, as it replaces a Linux guest.
        let t = T::parse_from(["x", "-f", f, "--exit-code", "3"]);
        assert!(matches!(
            spec(&t.s).unwrap().sandbox,
            Some(pb::job_spec::Sandbox::Workload(w)) if w.exit_code == 3
        ));
    }
}
