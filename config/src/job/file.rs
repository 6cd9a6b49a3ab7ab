//! The job file `coloctl submit -f job.yaml` reads (documented in docs/agent.md):
//!
//! ```yaml
//! key: nightly-etl-42          # idempotency key (coloctl makes one up when absent)
//! name: nightly etl
//! vcpus: 2
//! memory_mib: 256
//! workload: {cpu_units: 5000, mem_mib: 64, hold_seconds: 0, exit_code: 0, io: "", cpu_forever: false}
//! # or: linux: {kernel: /var/lib/colo/vmlinux, rootfs: /var/lib/colo/root.img, cmdline: "console=ttyS0"}
//! # or: container: {image: /var/lib/colo/images/busybox, command: sort, args: [-o, /out/s, /in/f],
//! #                 env: {LC_ALL: C}, workdir: /, user: {uid: 1000, gid: 1000},
//! #                 volumes: [{source: /data/in, target: /in, read_only: true}, {source: /data/out, target: /out}]}
//! disks: [{path: /var/lib/colo/scratch.img, read_only: false, bandwidth_bps: 0, iops: 0}]
//! qos_class: batch             # or mid
//! priority: 0
//! labels: {team: data}
//! deadline: 2h                 # or deadline_seconds: 7200
//! ```
//!
//! Its sandbox sections and disks are the model's own types ([`WorkloadGuest`], [`LinuxGuest`],
//! [`Program`], [`DiskSpec`]); only the top level is spelled for people: `key`, the sandbox named
//! by its section, the deadline as a duration, everything optional.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    DiskSpec, Guest, JobSpec, LinuxGuest, Program, QosClass, UnknownQosClass, WorkloadGuest,
};

/// What is wrong with a job file.
#[derive(Debug, thiserror::Error)]
pub enum JobFileError {
    /// Not YAML, or not the job file's fields (`{name}: {message}`, with line and column).
    #[error("{0}")]
    Parse(String),
    /// More than one sandbox section given.
    #[error("give one sandbox section (workload, linux or container), not several")]
    TwoGuests,
    /// `qos_class` is neither `batch` nor `mid`.
    #[error(transparent)]
    QosClass(#[from] UnknownQosClass),
    /// `deadline` is not a duration.
    #[error("deadline: {0}")]
    Deadline(crate::units::UnitError),
}

/// A job file, as written.
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
    pub workload: Option<WorkloadGuest>,
    /// A Linux guest.
    pub linux: Option<LinuxGuest>,
    /// A container.
    pub container: Option<Program>,
    /// Disks.
    pub disks: Vec<DiskSpec>,
    /// `batch` or `mid`.
    pub qos_class: Option<String>,
    /// Priority.
    pub priority: Option<i32>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Deadline as a duration (`2h`).
    pub deadline: Option<String>,
    /// Deadline in seconds.
    pub deadline_seconds: Option<u64>,
}

impl JobFile {
    /// Parses a job file (YAML, or JSON, which is YAML too); `name` (its path, or `stdin`)
    /// starts every error.
    pub fn parse(name: &str, text: &str) -> Result<Self, JobFileError> {
        serde_saphyr::from_str(text).map_err(|e| JobFileError::Parse(format!("{name}: {e}")))
    }

    /// The spec this file describes, unvalidated (the agent validates it): absent numbers are
    /// 0 (the node's defaults), an absent key is empty, and a file that names no guest runs
    /// colo's workload guest with its defaults.
    pub fn to_spec(&self) -> Result<JobSpec, JobFileError> {
        let guest = match (&self.workload, &self.linux, &self.container) {
            (Some(w), None, None) => Guest::Workload(w.clone()),
            (None, Some(l), None) => Guest::Linux(l.clone()),
            (None, None, Some(c)) => Guest::Container(c.clone()),
            (None, None, None) => Guest::Workload(WorkloadGuest::default()),
            _ => return Err(JobFileError::TwoGuests),
        };
        let deadline_seconds = match (&self.deadline, self.deadline_seconds) {
            (Some(d), _) => crate::units::parse_duration(d)
                .map_err(JobFileError::Deadline)?
                .as_secs(),
            (None, Some(s)) => s,
            (None, None) => 0,
        };
        Ok(JobSpec {
            idempotency_key: self.key.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            guest,
            vcpus: self.vcpus.unwrap_or(0),
            memory_mib: self.memory_mib.unwrap_or(0),
            disks: self.disks.clone(),
            qos_class: match &self.qos_class {
                Some(q) => QosClass::from_name(q)?,
                None => QosClass::Batch,
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
        let spec = JobFile::parse("job.yaml", text).unwrap().to_spec().unwrap();
        assert_eq!(spec.idempotency_key, "k1");
        assert_eq!(spec.deadline_seconds, 120);
        assert_eq!(spec.qos_class, QosClass::Mid);
        match spec.guest {
            Guest::Workload(w) => assert_eq!((w.cpu_units, w.exit_code), (50, 3)),
            other => panic!("{other:?}"),
        }
        let e = JobFile::parse("job.yaml", "vcpu: 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("job.yaml"), "{e}");
        let e = JobFile::parse("j", "qos_class: gold\n")
            .unwrap()
            .to_spec()
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch or mid"), "{e}");
    }

    #[test]
    fn sections_may_leave_out_what_validation_requires() {
        // A disk without a path and a Linux guest without a kernel parse: the agent names the
        // missing field (`spec.disks[0].path: is required`).
        let text = "linux: {rootfs: /r.img}\ndisks: [{read_only: true}]\n";
        let spec = JobFile::parse("j", text).unwrap().to_spec().unwrap();
        assert!(spec.disks[0].path.as_os_str().is_empty());
        assert!(matches!(spec.guest, Guest::Linux(l) if l.kernel.as_os_str().is_empty()));
        let e = JobFile::parse("j", "workload: {}\nlinux: {}\n")
            .unwrap()
            .to_spec()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "give one sandbox section (workload, linux or container), not several"
        );
    }

    #[test]
    fn a_container_section_reads_the_documented_fields() {
        let text = "container: {image: /img/bb, command: sort, args: [-o, /out/s, /in/f], env: {LC_ALL: C}, workdir: /w, user: {uid: 7, gid: 8}, volumes: [{source: /d/in, target: /in, read_only: true}, {source: /d/out, target: /out}]}\n";
        let spec = JobFile::parse("j", text).unwrap().to_spec().unwrap();
        let Guest::Container(p) = spec.guest else {
            panic!("{:?}", spec.guest)
        };
        assert_eq!(p.command, "sort");
        assert_eq!(p.args, ["-o", "/out/s", "/in/f"]);
        assert_eq!(p.env["LC_ALL"], "C");
        assert_eq!(p.user, Some(super::super::User { uid: 7, gid: 8 }));
        assert!(p.volumes[0].read_only && !p.volumes[1].read_only);
        let e = JobFile::parse("j", "container: {image: /i, comand: x}\n").unwrap_err();
        assert!(e.to_string().contains("comand"), "{e}");
    }
}
