//! The one conversion between the job spec on the wire (`colo.agent.v1.JobSpec`) and colo's job
//! model ([`colo_config::job::JobSpec`]): coloctl sends a model it built from a job file and its
//! flags, the agent turns what arrives back into the model (then validates it) and reports
//! stored specs on the wire again.
//!
//! Wire → model refuses only what the model cannot hold (no guest, an unknown QoS class); an
//! unspecified class is `batch`, and an empty `rootfs_path` is no root filesystem.

use std::path::PathBuf;

use colo_config::job::{DiskSpec, FieldError, Guest, JobSpec, LinuxGuest, QosClass, WorkloadGuest};

use crate::agent as pb;

fn path_text(p: &std::path::Path) -> String {
    p.display().to_string()
}

impl From<&JobSpec> for pb::JobSpec {
    fn from(s: &JobSpec) -> Self {
        Self {
            idempotency_key: s.idempotency_key.clone(),
            name: s.name.clone(),
            guest: Some(match &s.guest {
                Guest::Workload(w) => pb::job_spec::Guest::Workload(pb::WorkloadGuest {
                    cpu_units: w.cpu_units,
                    mem_mib: w.mem_mib,
                    hold_seconds: w.hold_seconds,
                    exit_code: w.exit_code,
                    io: w.io.clone(),
                    cpu_forever: w.cpu_forever,
                }),
                Guest::Linux(l) => pb::job_spec::Guest::Linux(pb::LinuxGuest {
                    kernel_path: path_text(&l.kernel),
                    rootfs_path: l.rootfs.as_deref().map(path_text).unwrap_or_default(),
                    cmdline: l.cmdline.clone(),
                }),
                Guest::Container(_) => pb::job_spec::Guest::Linux(pb::LinuxGuest::default()),
            }),
            vcpus: s.vcpus,
            memory_mib: s.memory_mib,
            disks: s
                .disks
                .iter()
                .map(|d| pb::Disk {
                    path: path_text(&d.path),
                    read_only: d.read_only,
                    bandwidth_bps: d.bandwidth_bps,
                    iops: d.iops,
                })
                .collect(),
            qos_class: pb::QosClass::from(s.qos_class) as i32,
            priority: s.priority,
            labels: s.labels.clone().into_iter().collect(),
            deadline_seconds: s.deadline_seconds,
        }
    }
}

impl From<QosClass> for pb::QosClass {
    fn from(q: QosClass) -> Self {
        match q {
            QosClass::Batch => Self::Batch,
            QosClass::Mid => Self::Mid,
        }
    }
}

impl TryFrom<&pb::JobSpec> for JobSpec {
    type Error = FieldError;

    fn try_from(s: &pb::JobSpec) -> Result<Self, FieldError> {
        let guest = match &s.guest {
            None => {
                return Err(FieldError::new(
                    "spec.guest",
                    "is required: set `workload` (colo's workload guest) or `linux`",
                ));
            }
            Some(pb::job_spec::Guest::Workload(w)) => Guest::Workload(WorkloadGuest {
                cpu_units: w.cpu_units,
                mem_mib: w.mem_mib,
                hold_seconds: w.hold_seconds,
                exit_code: w.exit_code,
                io: w.io.clone(),
                cpu_forever: w.cpu_forever,
            }),
            Some(pb::job_spec::Guest::Linux(l)) => Guest::Linux(LinuxGuest {
                kernel: PathBuf::from(&l.kernel_path),
                rootfs: (!l.rootfs_path.is_empty()).then(|| PathBuf::from(&l.rootfs_path)),
                cmdline: l.cmdline.clone(),
            }),
        };
        let qos_class = match pb::QosClass::try_from(s.qos_class) {
            Ok(pb::QosClass::Unspecified | pb::QosClass::Batch) => QosClass::Batch,
            Ok(pb::QosClass::Mid) => QosClass::Mid,
            Err(_) => {
                return Err(FieldError::new(
                    "spec.qos_class",
                    format!(
                        "must be QOS_CLASS_BATCH or QOS_CLASS_MID, got {}",
                        s.qos_class
                    ),
                ));
            }
        };
        Ok(Self {
            idempotency_key: s.idempotency_key.clone(),
            name: s.name.clone(),
            guest,
            vcpus: s.vcpus,
            memory_mib: s.memory_mib,
            disks: s
                .disks
                .iter()
                .map(|d| DiskSpec {
                    path: PathBuf::from(&d.path),
                    read_only: d.read_only,
                    bandwidth_bps: d.bandwidth_bps,
                    iops: d.iops,
                })
                .collect(),
            qos_class,
            priority: s.priority,
            labels: s.labels.clone().into_iter().collect(),
            deadline_seconds: s.deadline_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_the_wire() {
        let mut spec = JobSpec::new(
            "k",
            Guest::Linux(LinuxGuest {
                kernel: "/img/vmlinux".into(),
                rootfs: Some("/img/root.img".into()),
                cmdline: "console=ttyS0".into(),
            }),
        );
        spec.vcpus = 2;
        spec.qos_class = QosClass::Mid;
        spec.disks.push(DiskSpec {
            path: "/vol/d.img".into(),
            read_only: true,
            bandwidth_bps: 5,
            iops: 6,
        });
        spec.labels.insert("team".into(), "data".into());
        spec.deadline_seconds = 60;
        let wire = pb::JobSpec::from(&spec);
        assert_eq!(JobSpec::try_from(&wire).unwrap(), spec);
        spec.guest = Guest::Workload(WorkloadGuest {
            io: "write:5".into(),
            cpu_forever: true,
            ..Default::default()
        });
        assert_eq!(JobSpec::try_from(&pb::JobSpec::from(&spec)).unwrap(), spec);
    }

    #[test]
    fn what_the_model_cannot_hold_is_refused() {
        let e = JobSpec::try_from(&pb::JobSpec::default()).unwrap_err();
        assert_eq!(e.field, "spec.guest");
        let wire = pb::JobSpec {
            guest: Some(pb::job_spec::Guest::Workload(Default::default())),
            qos_class: 9,
            ..Default::default()
        };
        let e = JobSpec::try_from(&wire).unwrap_err();
        assert_eq!(e.field, "spec.qos_class");
        let wire = pb::JobSpec {
            qos_class: 0,
            guest: Some(pb::job_spec::Guest::Linux(Default::default())),
            ..wire
        };
        let spec = JobSpec::try_from(&wire).unwrap();
        assert_eq!(spec.qos_class, QosClass::Batch);
        assert!(matches!(spec.guest, Guest::Linux(l) if l.rootfs.is_none()));
    }
}
