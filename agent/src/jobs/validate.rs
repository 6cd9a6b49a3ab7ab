//! Validation of job specs arriving over the API: the wire spec becomes colo's job model
//! (`colo_proto::job`), which checks itself against the node's limits
//! ([`JobSpec::validate`]); the agent adds what only it knows: its job ids, and which host files
//! a client may name ([`PathRoots`] opens them as the VMM will). Each refusal names the field
//! and the rule (`spec.vcpus: must be 1..=2 (the node's max_vcpus), got 9`), and becomes
//! `InvalidArgument`.

use std::path::Path;

use colo_proto::agent as pb;

pub use colo_config::job::validate::{FieldError, check_key, check_text};
use colo_config::job::validate::{MAX_GUEST_EXIT_CODE, MIN_MEMORY_MIB};
use colo_config::job::{PathAccess, PathKind, truncate};

use super::model::JobSpec;
use super::paths::{Accept, PathRoots, RootKind};

/// The node's limits and defaults for job sizes, and the roots clients may name files beneath.
pub type SpecLimits = colo_config::job::SpecLimits<PathRoots>;

// The job model's limits are colo-vmm's.
const _: () = assert!(MAX_GUEST_EXIT_CODE == colo_vmm::GUEST_EXIT_CODE_MAX);
const _: () = assert!(MIN_MEMORY_MIB == colo_vmm::MIN_MEMORY_MIB);

impl PathAccess for PathRoots {
    /// Opens the file as the VMM will; the launch opens it again the same way.
    fn check(&self, kind: PathKind, path: &Path, write: bool) -> Result<(), String> {
        let kind = match kind {
            PathKind::Image => RootKind::Image,
            PathKind::Volume => RootKind::Volume,
        };
        self.open(kind, &path.to_string_lossy(), write)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Resolves the directory (or image file) as the container launch will.
    fn check_dir(&self, kind: PathKind, path: &Path, write: bool) -> Result<(), String> {
        let (kind, accept) = match kind {
            PathKind::Image => (RootKind::Image, Accept::DirOrFile),
            PathKind::Volume => (RootKind::Volume, Accept::Dir),
        };
        self.resolve(kind, &path.to_string_lossy(), write, accept)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// A directory without `oci-layout`: the container launch uses it in place, with no image
    /// configuration.
    fn is_plain_root(&self, path: &Path) -> bool {
        self.resolve(
            RootKind::Image,
            &path.to_string_lossy(),
            false,
            Accept::DirOrFile,
        )
        .is_ok_and(|r| r.is_dir && !r.path.join("oci-layout").exists())
    }
}

/// Checks a job id as the agent makes them (`[a-z0-9-]`, 1..=64).
pub fn check_job_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(FieldError::new(
            field,
            format!(
                "is not a job id (1..=64 characters of [a-z0-9-]), got {:?}",
                truncate(id)
            ),
        ));
    }
    Ok(())
}

/// Validates a submitted spec against the node's limits and fills in the defaults.
pub fn job_spec(spec: Option<&pb::JobSpec>, limits: &SpecLimits) -> Result<JobSpec, FieldError> {
    let spec = spec.ok_or_else(|| FieldError::new("spec", "is required"))?;
    JobSpec::try_from(spec)?.validate(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use colo_config::job::QosClass;

    fn good() -> pb::JobSpec {
        pb::JobSpec {
            idempotency_key: "launcher-1:attempt-0".into(),
            sandbox: Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
                cpu_units: 10,
                exit_code: 3,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn err(spec: pb::JobSpec) -> FieldError {
        job_spec(Some(&spec), &SpecLimits::default()).unwrap_err()
    }

    #[test]
    fn defaults_are_filled_in() {
        let s = job_spec(Some(&good()), &SpecLimits::default()).unwrap();
        assert_eq!((s.vcpus, s.memory_mib), (1, 64));
        assert_eq!(s.qos_class, QosClass::Batch);
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(
            job_spec(None, &SpecLimits::default()).unwrap_err().field,
            "spec"
        );
        type Mutation = Box<dyn Fn(&mut pb::JobSpec)>;
        let cases: Vec<(Mutation, &str, &str)> = vec![
            (
                Box::new(|s| s.idempotency_key.clear()),
                "spec.idempotency_key",
                "required",
            ),
            (
                Box::new(|s| s.idempotency_key = "a b".into()),
                "spec.idempotency_key",
                "[A-Za-z0-9._:-]",
            ),
            (
                Box::new(|s| s.idempotency_key = "x".repeat(129)),
                "spec.idempotency_key",
                "128",
            ),
            (Box::new(|s| s.vcpus = 99), "spec.vcpus", "1..=8"),
            (Box::new(|s| s.memory_mib = 1), "spec.memory_mib", "8..="),
            (Box::new(|s| s.sandbox = None), "spec.sandbox", "required"),
            (
                Box::new(|s| {
                    s.sandbox = Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
                        exit_code: 64,
                        ..Default::default()
                    }))
                }),
                "spec.workload.exit_code",
                "0..=63",
            ),
            (
                Box::new(|s| {
                    s.sandbox = Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
                        io: "write:5".into(),
                        ..Default::default()
                    }))
                }),
                "spec.workload.io",
                "needs a disk",
            ),
            (
                Box::new(|s| {
                    s.sandbox = Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
                        io: "write:5:sometimes".into(),
                        ..Default::default()
                    }))
                }),
                "spec.workload.io",
                ":forever",
            ),
            (
                Box::new(|s| {
                    s.sandbox = Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
                        io: "sideways".into(),
                        ..Default::default()
                    }))
                }),
                "spec.workload.io",
                "read:MiB",
            ),
            (
                Box::new(|s| {
                    s.sandbox = Some(pb::job_spec::Sandbox::Linux(pb::LinuxGuest {
                        kernel_path: "vmlinux".into(),
                        ..Default::default()
                    }))
                }),
                "spec.linux.kernel_path",
                "absolute",
            ),
            (
                Box::new(|s| {
                    s.sandbox = Some(pb::job_spec::Sandbox::Linux(pb::LinuxGuest {
                        kernel_path: "/no/such/vmlinux".into(),
                        ..Default::default()
                    }))
                }),
                "spec.linux.kernel_path",
                "not beneath offline.image_roots (none configured)",
            ),
            (
                Box::new(|s| {
                    s.disks.push(pb::Disk {
                        path: "/proc".into(),
                        ..Default::default()
                    })
                }),
                "spec.disks[0].path",
                "not beneath offline.volume_roots",
            ),
            (
                Box::new(|s| s.qos_class = 9),
                "spec.qos_class",
                "QOS_CLASS_BATCH",
            ),
            (
                Box::new(|s| s.deadline_seconds = u64::MAX),
                "spec.deadline_seconds",
                "30 days",
            ),
            (
                Box::new(|s| {
                    s.labels.insert("bad key".into(), "v".into());
                }),
                "spec.labels[\"bad key\"]",
                "keys may only",
            ),
            (
                Box::new(|s| s.name = "a\nb".into()),
                "spec.name",
                "printable",
            ),
            (
                Box::new(|s| s.name = "invoice\u{202E}fdp.exe".into()),
                "spec.name",
                "U+202E",
            ),
            (
                Box::new(|s| s.name = "é".repeat(129)),
                "spec.name",
                "at most 128 characters, got 129",
            ),
        ];
        for (mutate, field, rule) in cases {
            let mut s = good();
            mutate(&mut s);
            let e = err(s);
            assert_eq!(e.field, field, "{e}");
            assert!(e.rule.contains(rule), "{field}: {e}");
        }
    }

    #[test]
    fn a_container_from_the_wire_is_checked() {
        // One directory is the image root and the volume root: it holds an image directory, a
        // volume directory and a disk image.
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("busybox");
        let input = dir.path().join("in");
        let disk = dir.path().join("d.img");
        std::fs::create_dir(&image).unwrap();
        std::fs::create_dir(&input).unwrap();
        std::fs::write(&disk, b"").unwrap();
        let root = crate::jobs::paths::Root {
            dir: dir.path().to_path_buf(),
            devices: false,
        };
        let limits = SpecLimits {
            paths: PathRoots {
                images: vec![root.clone()],
                volumes: vec![root.clone()],
                ..Default::default()
            },
            ..Default::default()
        };
        let container = |c: pb::ContainerJob| pb::JobSpec {
            sandbox: Some(pb::job_spec::Sandbox::Container(c)),
            ..good()
        };
        let sh = pb::ContainerJob {
            image: image.display().to_string(),
            command: "sh".into(),
            args: vec!["-c".into(), "echo hi; exit 7".into()],
            volumes: vec![pb::VolumeMount {
                source: input.display().to_string(),
                target: "/in".into(),
                read_only: true,
            }],
            ..Default::default()
        };
        let s = job_spec(Some(&container(sh.clone())), &limits).unwrap();
        let colo_config::job::Guest::Container(p) = &s.guest else {
            panic!("{s:?}")
        };
        assert_eq!(
            (p.args[1].as_str(), p.volumes[0].read_only),
            ("echo hi; exit 7", true)
        );
        let cases: Vec<(pb::ContainerJob, &str, &str)> = vec![
            (
                pb::ContainerJob {
                    command: String::new(),
                    ..sh.clone()
                },
                "spec.container.command",
                "is required",
            ),
            (
                pb::ContainerJob {
                    image: String::new(),
                    ..sh.clone()
                },
                "spec.container.image",
                "is required",
            ),
            (
                pb::ContainerJob {
                    image: "/elsewhere/busybox".into(),
                    ..sh.clone()
                },
                "spec.container.image",
                "not beneath offline.image_roots",
            ),
            (
                pb::ContainerJob {
                    args: vec!["a\0b".into()],
                    ..sh.clone()
                },
                "spec.container.args[0]",
                "NUL",
            ),
            (
                pb::ContainerJob {
                    env: [("A-B".to_string(), "v".to_string())].into(),
                    ..sh.clone()
                },
                "spec.container.env[\"A-B\"]",
                "[A-Za-z0-9_]",
            ),
            (
                pb::ContainerJob {
                    workdir: "work".into(),
                    ..sh.clone()
                },
                "spec.container.workdir",
                "absolute",
            ),
            (
                pb::ContainerJob {
                    volumes: vec![pb::VolumeMount {
                        source: "/data/in".into(),
                        target: "/in".into(),
                        read_only: true,
                    }],
                    ..sh.clone()
                },
                "spec.container.volumes[0].source",
                "not beneath offline.volume_roots",
            ),
            (
                pb::ContainerJob {
                    volumes: vec![pb::VolumeMount {
                        source: disk.display().to_string(),
                        target: "/in".into(),
                        read_only: true,
                    }],
                    ..sh.clone()
                },
                "spec.container.volumes[0].source",
                "a volume must be a directory",
            ),
            (
                pb::ContainerJob {
                    volumes: vec![pb::VolumeMount {
                        source: input.display().to_string(),
                        target: "/proc/x".into(),
                        read_only: true,
                    }],
                    ..sh.clone()
                },
                "spec.container.volumes[0].target",
                "/proc",
            ),
        ];
        for (c, field, rule) in cases {
            let e = job_spec(Some(&container(c)), &limits).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.rule.contains(rule), "{field}: {e}");
        }
        let mut with_disk = container(sh);
        with_disk.disks.push(pb::Disk {
            path: disk.display().to_string(),
            read_only: true,
            ..Default::default()
        });
        let e = job_spec(Some(&with_disk), &limits).unwrap_err();
        assert_eq!(e.field, "spec.disks");
    }

    #[test]
    fn names_count_characters_and_echoes_are_cut() {
        let mut s = good();
        s.name = "é".repeat(128); // 256 bytes, 128 characters
        assert!(job_spec(Some(&s), &SpecLimits::default()).is_ok());
        let e = check_job_id("id", &"x".repeat(100_000)).unwrap_err();
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
        assert!(e.rule.contains("100000 characters"), "{e}");
    }

    #[test]
    fn job_ids() {
        assert!(check_job_id("id", "j-1a2b").is_ok());
        assert!(
            check_job_id("id", "")
                .unwrap_err()
                .rule
                .contains("required")
        );
        assert!(check_job_id("id", "../x").is_err());
        assert!(check_job_id("id", "A").is_err());
    }
}
