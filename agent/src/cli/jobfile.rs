//! The job file `coloctl submit -f job.yaml` reads (documented in docs/agent.md):
//!
//! ```yaml
//! key: nightly-etl-42          # idempotency key (coloctl makes one up when absent)
//! name: nightly etl
//! vcpus: 2
//! memory_mib: 256
//! workload: {cpu_units: 5000, mem_mib: 64, hold_seconds: 0, exit_code: 0, io: "", cpu_forever: false}
//! # or: linux: {kernel: /var/lib/colo/vmlinux, rootfs: /var/lib/colo/root.img, cmdline: "console=ttyS0"}
//! disks: [{path: /var/lib/colo/scratch.img, read_only: false, bandwidth_bps: 0, iops: 0}]
//! qos_class: batch             # or mid
//! priority: 0
//! labels: {team: data}
//! deadline: 2h                 # or deadline_seconds: 7200
//! ```

use std::collections::HashMap;

use colo_proto::agent as pb;
use serde::Deserialize;

use super::CliError;

/// A job file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JobFile {
    /// Idempotency key.
    pub key: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// vCPUs.
    pub vcpus: Option<u32>,
    /// Guest memory in MiB.
    pub memory_mib: Option<u64>,
    /// The workload guest.
    pub workload: Option<WorkloadFile>,
    /// A Linux guest.
    pub linux: Option<LinuxFile>,
    /// Disks.
    pub disks: Vec<DiskFile>,
    /// `batch` or `mid`.
    pub qos_class: Option<String>,
    /// Priority.
    pub priority: Option<i32>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Deadline as a duration (`2h`).
    pub deadline: Option<String>,
    /// Deadline in seconds.
    pub deadline_seconds: Option<u64>,
}

/// The workload guest section.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadFile {
    /// Work units.
    pub cpu_units: u64,
    /// MiB to touch.
    pub mem_mib: u64,
    /// Idle seconds.
    pub hold_seconds: u64,
    /// Exit code.
    pub exit_code: i32,
    /// IO.
    pub io: String,
    /// Burn CPU until stopped.
    pub cpu_forever: bool,
}

/// The Linux guest section.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LinuxFile {
    /// Kernel.
    pub kernel: String,
    /// Root filesystem.
    pub rootfs: String,
    /// Command line.
    pub cmdline: String,
}

/// A disk.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DiskFile {
    /// Path.
    pub path: String,
    /// Read-only.
    pub read_only: bool,
    /// Bytes per second.
    pub bandwidth_bps: u64,
    /// Operations per second.
    pub iops: u64,
}

/// Parses a job file.
pub fn parse(name: &str, text: &str) -> Result<JobFile, CliError> {
    serde_saphyr::from_str(text).map_err(|e| CliError::Local(format!("{name}: {e}")))
}

/// Parses `batch` / `mid`.
pub fn qos(s: &str) -> Result<pb::QosClass, CliError> {
    match s {
        "batch" => Ok(pb::QosClass::Batch),
        "mid" => Ok(pb::QosClass::Mid),
        other => Err(CliError::Local(format!(
            "qos_class must be batch or mid, got {other:?}"
        ))),
    }
}

impl JobFile {
    /// The spec this file describes (the agent validates it).
    pub fn to_spec(&self) -> Result<pb::JobSpec, CliError> {
        let guest = match (&self.workload, &self.linux) {
            (Some(_), Some(_)) => {
                return Err(CliError::Local(
                    "give either workload or linux, not both".into(),
                ));
            }
            (Some(w), None) => Some(pb::job_spec::Guest::Workload(pb::WorkloadGuest {
                cpu_units: w.cpu_units,
                mem_mib: w.mem_mib,
                hold_seconds: w.hold_seconds,
                exit_code: w.exit_code,
                io: w.io.clone(),
                cpu_forever: w.cpu_forever,
            })),
            (None, Some(l)) => Some(pb::job_spec::Guest::Linux(pb::LinuxGuest {
                kernel_path: l.kernel.clone(),
                rootfs_path: l.rootfs.clone(),
                cmdline: l.cmdline.clone(),
            })),
            (None, None) => None,
        };
        let deadline_seconds = match (&self.deadline, self.deadline_seconds) {
            (Some(d), _) => colo_config::units::parse_duration(d)
                .map_err(|e| CliError::Local(format!("deadline: {e}")))?
                .as_secs(),
            (None, Some(s)) => s,
            (None, None) => 0,
        };
        Ok(pb::JobSpec {
            idempotency_key: self.key.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            guest,
            vcpus: self.vcpus.unwrap_or(0),
            memory_mib: self.memory_mib.unwrap_or(0),
            disks: self
                .disks
                .iter()
                .map(|d| pb::Disk {
                    path: d.path.clone(),
                    read_only: d.read_only,
                    bandwidth_bps: d.bandwidth_bps,
                    iops: d.iops,
                })
                .collect(),
            qos_class: match &self.qos_class {
                Some(q) => qos(q)? as i32,
                None => pb::QosClass::Unspecified as i32,
            },
            priority: self.priority.unwrap_or(0),
            labels: self.labels.clone(),
            deadline_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = "key: k1\nname: n\nvcpus: 2\nmemory_mib: 128\nworkload: {cpu_units: 50, exit_code: 3}\nlabels: {team: data}\ndeadline: 2m\nqos_class: mid\n";
        let spec = parse("job.yaml", text).unwrap().to_spec().unwrap();
        assert_eq!(spec.idempotency_key, "k1");
        assert_eq!(spec.deadline_seconds, 120);
        assert_eq!(spec.qos_class, pb::QosClass::Mid as i32);
        match spec.guest {
            Some(pb::job_spec::Guest::Workload(w)) => {
                assert_eq!((w.cpu_units, w.exit_code), (50, 3))
            }
            other => panic!("{other:?}"),
        }
        let e = parse("job.yaml", "vcpu: 2\n").unwrap_err().to_string();
        assert!(e.contains("job.yaml"), "{e}");
        let e = parse("j", "qos_class: gold\n")
            .unwrap()
            .to_spec()
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch or mid"), "{e}");
    }
}
