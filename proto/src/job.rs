//! The one conversion between the job spec on the wire (`colo.agent.v1.JobSpec`) and colo's job
//! model ([`colo_config::job::JobSpec`]): coloctl sends a model it built from a job file and its
//! flags, the agent turns what arrives back into the model (then validates it) and reports
//! stored specs on the wire again.
//!
//! Wire → model refuses only what the model cannot hold (no sandbox, an unknown QoS class); an
//! unspecified class is `batch`, an empty `rootfs_path` is no root filesystem, and a container
//! without `user` runs as 0:0. The wire's `sandbox` case is the model's [`Guest`].

use std::path::PathBuf;

use colo_config::job::{
    DiskSpec, FieldError, Guest, JobSpec, LinuxGuest, Program, QosClass, User, Volume,
    WorkloadGuest,
};

use crate::agent as pb;

fn path_text(p: &std::path::Path) -> String {
    p.display().to_string()
}

impl From<&JobSpec> for pb::JobSpec {
    fn from(s: &JobSpec) -> Self {
        Self {
            idempotency_key: s.idempotency_key.clone(),
            name: s.name.clone(),
            sandbox: Some(match &s.guest {
                Guest::Workload(w) => pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
                    cpu_units: w.cpu_units,
                    mem_mib: w.mem_mib,
                    hold_seconds: w.hold_seconds,
                    exit_code: w.exit_code,
                    io: w.io.clone(),
                    cpu_forever: w.cpu_forever,
                }),
                Guest::Linux(l) => pb::job_spec::Sandbox::Linux(pb::LinuxGuest {
                    kernel_path: path_text(&l.kernel),
                    rootfs_path: l.rootfs.as_deref().map(path_text).unwrap_or_default(),
                    cmdline: l.cmdline.clone(),
                    program: l.program.as_ref().map(Into::into),
                }),
                Guest::Container(p) => pb::job_spec::Sandbox::Container(p.into()),
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

impl From<&Program> for pb::ContainerJob {
    fn from(p: &Program) -> Self {
        Self {
            image: path_text(&p.image),
            command: p.command.clone(),
            args: p.args.clone(),
            env: p.env.clone().into_iter().collect(),
            workdir: p.workdir.clone(),
            user: p.user.map(|u| pb::ContainerUser {
                uid: u.uid,
                gid: u.gid,
            }),
            volumes: p
                .volumes
                .iter()
                .map(|v| pb::VolumeMount {
                    source: path_text(&v.source),
                    target: v.target.clone(),
                    read_only: v.read_only,
                })
                .collect(),
        }
    }
}

impl From<&pb::ContainerJob> for Program {
    fn from(c: &pb::ContainerJob) -> Self {
        Self {
            image: PathBuf::from(&c.image),
            command: c.command.clone(),
            args: c.args.clone(),
            env: c.env.clone().into_iter().collect(),
            workdir: c.workdir.clone(),
            user: c.user.map(|u| User {
                uid: u.uid,
                gid: u.gid,
            }),
            volumes: c
                .volumes
                .iter()
                .map(|v| Volume {
                    source: PathBuf::from(&v.source),
                    target: v.target.clone(),
                    read_only: v.read_only,
                })
                .collect(),
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
        let guest = match &s.sandbox {
            None => {
                return Err(FieldError::new(
                    "spec.sandbox",
                    "is required: set workload (colo's workload guest), linux or container",
                ));
            }
            Some(pb::job_spec::Sandbox::Workload(w)) => Guest::Workload(WorkloadGuest {
                cpu_units: w.cpu_units,
                mem_mib: w.mem_mib,
                hold_seconds: w.hold_seconds,
                exit_code: w.exit_code,
                io: w.io.clone(),
                cpu_forever: w.cpu_forever,
            }),
            Some(pb::job_spec::Sandbox::Linux(l)) => Guest::Linux(LinuxGuest {
                kernel: PathBuf::from(&l.kernel_path),
                rootfs: (!l.rootfs_path.is_empty()).then(|| PathBuf::from(&l.rootfs_path)),
                cmdline: l.cmdline.clone(),
                program: l.program.as_ref().map(Into::into),
            }),
            Some(pb::job_spec::Sandbox::Container(c)) => Guest::Container(c.into()),
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
                program: None,
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
        spec.guest = Guest::Linux(LinuxGuest::program(Program {
            image: "/img/alpine.tar".into(),
            command: "/bin/sort".into(),
            args: vec!["-n".into()],
            env: [("LANG".to_string(), "C".to_string())].into(),
            workdir: "/data".into(),
            user: Some(User { uid: 7, gid: 8 }),
            volumes: vec![],
        }));
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
    fn a_container_survives_the_wire() {
        let program = Program {
            image: "/img/bb".into(),
            command: "sort".into(),
            args: vec!["-o".into(), "/out/s".into(), "/in/f".into()],
            env: [("LC_ALL".to_string(), "C".to_string())].into(),
            workdir: "/w".into(),
            user: Some(User { uid: 7, gid: 8 }),
            volumes: vec![
                Volume::parse("/d/in:/in:ro").unwrap(),
                Volume::parse("/d/out:/out").unwrap(),
            ],
        };
        let mut spec = JobSpec::new("k", Guest::Container(program.clone()));
        let wire = pb::JobSpec::from(&spec);
        let Some(pb::job_spec::Sandbox::Container(c)) = &wire.sandbox else {
            panic!("{wire:?}")
        };
        assert_eq!((c.image.as_str(), c.command.as_str()), ("/img/bb", "sort"));
        assert_eq!(c.user, Some(pb::ContainerUser { uid: 7, gid: 8 }));
        assert!(c.volumes[0].read_only && !c.volumes[1].read_only);
        assert_eq!(JobSpec::try_from(&wire).unwrap(), spec);
        // An absent user stays absent (the agent runs the program as 0:0).
        spec.guest = Guest::Container(Program {
            user: None,
            ..program
        });
        assert_eq!(JobSpec::try_from(&pb::JobSpec::from(&spec)).unwrap(), spec);
    }

    #[test]
    fn the_sandbox_cases_keep_the_field_numbers_of_the_guest_cases() {
        use prost::Message;
        // Field 3 and 4 were `guest`'s workload and linux: a client built before the rename
        // sends the same bytes.
        let bytes = |sandbox| {
            pb::JobSpec {
                sandbox: Some(sandbox),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let workload = pb::job_spec::Sandbox::Workload(Default::default());
        assert_eq!(bytes(workload), [3 << 3 | 2, 0]);
        assert_eq!(
            bytes(pb::job_spec::Sandbox::Linux(Default::default())),
            [4 << 3 | 2, 0]
        );
        let container = pb::job_spec::Sandbox::Container(Default::default());
        assert_eq!(bytes(container), [12 << 3 | 2, 0]);
    }

    #[test]
    fn what_the_model_cannot_hold_is_refused() {
        let e = JobSpec::try_from(&pb::JobSpec::default()).unwrap_err();
        assert_eq!(e.field, "spec.sandbox");
        assert_eq!(
            e.rule,
            "is required: set workload (colo's workload guest), linux or container"
        );
        let wire = pb::JobSpec {
            sandbox: Some(pb::job_spec::Sandbox::Workload(Default::default())),
            qos_class: 9,
            ..Default::default()
        };
        let e = JobSpec::try_from(&wire).unwrap_err();
        assert_eq!(e.field, "spec.qos_class");
        let wire = pb::JobSpec {
            qos_class: 0,
            sandbox: Some(pb::job_spec::Sandbox::Linux(Default::default())),
            ..wire
        };
        let spec = JobSpec::try_from(&wire).unwrap();
        assert_eq!(spec.qos_class, QosClass::Batch);
        assert!(matches!(spec.guest, Guest::Linux(l) if l.rootfs.is_none()));
    }
}
