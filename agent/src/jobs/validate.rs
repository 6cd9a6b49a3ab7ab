//! Validation of job specs arriving over the API: each refusal names the field and the rule
//! (`spec.vcpus: must be 1..=2 (the node's max_vcpus), got 9`), and becomes `InvalidArgument`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use colo_proto::agent as pb;

use super::model::{DiskSpec, Guest, JobSpec, LinuxGuest, QosClass, WorkloadGuest};
use super::paths::{PathRoots, RootKind};
use crate::jobs::echo::truncate;

/// A field that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// The field's path in the request (`spec.workload.exit_code`).
    pub field: String,
    /// The rule and the value seen.
    pub rule: String,
}

fn bad(field: &str, rule: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        rule: rule.into(),
    }
}

/// The node's limits and defaults for job sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecLimits {
    /// vCPUs when the request says 0.
    pub default_vcpus: u32,
    /// Most vCPUs one job may have.
    pub max_vcpus: u32,
    /// Guest memory when the request says 0.
    pub default_memory_mib: u64,
    /// Least guest memory.
    pub min_memory_mib: u64,
    /// Most guest memory.
    pub max_memory_mib: u64,
    /// Where clients may name kernels, images and disks.
    pub paths: PathRoots,
}

impl Default for SpecLimits {
    fn default() -> Self {
        Self {
            default_vcpus: 1,
            max_vcpus: 8,
            default_memory_mib: 64,
            min_memory_mib: colo_vmm::MIN_MEMORY_MIB,
            max_memory_mib: 64 * 1024,
            paths: PathRoots::default(),
        }
    }
}

/// Most disks per job.
pub const MAX_DISKS: usize = 8;
/// Most labels per job.
pub const MAX_LABELS: usize = 64;
/// Longest deadline (30 days).
pub const MAX_DEADLINE_SECONDS: u64 = 30 * 24 * 3600;
/// Longest idle hold of the workload guest (7 days).
pub const MAX_HOLD_SECONDS: u64 = 7 * 24 * 3600;
/// Highest exit code the workload guest can report.
pub const MAX_GUEST_EXIT_CODE: i32 = colo_vmm::GUEST_EXIT_CODE_MAX;

/// Whether `c` may appear in text a person reads back (`coloctl list`, logs): no control
/// characters, no bidirectional overrides or isolates (they reorder what follows them on a
/// terminal), no zero-width or other invisible format characters, no line separators.
fn printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{061C}'             // Arabic letter mark
            | '\u{FEFF}'             // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}'))
}

/// Checks free text: at most `max` characters (not bytes), every one printable (see
/// [`printable`]).
pub fn check_text(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    let n = s.chars().count();
    if n > max {
        return Err(bad(
            field,
            format!("must be at most {max} characters, got {n}"),
        ));
    }
    if let Some(c) = s.chars().find(|c| !printable(*c)) {
        return Err(bad(
            field,
            format!(
                "must be printable text: control, bidirectional and invisible characters are refused, got U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// Checks an idempotency key: 1..=128 characters of `[A-Za-z0-9._:-]`.
pub fn check_key(field: &str, key: &str) -> Result<(), FieldError> {
    if key.is_empty() {
        return Err(bad(
            field,
            "is required (a client-chosen key that makes the submit idempotent)",
        ));
    }
    let n = key.chars().count();
    if n > 128 {
        return Err(bad(
            field,
            format!("must be at most 128 characters, got {n}"),
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(bad(
            field,
            format!("may only hold [A-Za-z0-9._:-], got {c:?} in {key:?}"),
        ));
    }
    Ok(())
}

/// Checks a job id as the agent makes them (`[a-z0-9-]`, 1..=64).
pub fn check_job_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(bad(field, "is required"));
    }
    if id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad(
            field,
            format!(
                "is not a job id (1..=64 characters of [a-z0-9-]), got {:?}",
                truncate(id)
            ),
        ));
    }
    Ok(())
}

/// Checks that the client may name `p` (beneath a root of `kind`) by opening it as the VMM
/// will; the launch opens it again the same way.
fn check_file(
    roots: &PathRoots,
    kind: RootKind,
    field: &str,
    p: &str,
    write: bool,
    what: &str,
) -> Result<PathBuf, FieldError> {
    if p.is_empty() {
        return Err(bad(field, format!("is required ({what})")));
    }
    if p.len() > 4096 {
        return Err(bad(
            field,
            format!("must be at most 4096 bytes, got {}", p.len()),
        ));
    }
    roots
        .open(kind, p, write)
        .map_err(|e| bad(field, e.to_string()))?;
    Ok(Path::new(p).into())
}

fn check_labels(
    labels: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(bad(
            "spec.labels",
            format!("at most {MAX_LABELS} labels, got {}", labels.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        let field = format!("spec.labels[{:?}]", truncate(k));
        if k.is_empty() || k.len() > 63 {
            return Err(bad(&field, "keys must be 1..=63 characters"));
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        {
            return Err(bad(&field, "keys may only hold [A-Za-z0-9._/-]"));
        }
        check_text(&field, v, 256)?;
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// Validates a submitted spec against the node's limits and fills in the defaults.
pub fn job_spec(spec: Option<&pb::JobSpec>, limits: &SpecLimits) -> Result<JobSpec, FieldError> {
    let spec = spec.ok_or_else(|| bad("spec", "is required"))?;
    check_key("spec.idempotency_key", &spec.idempotency_key)?;
    check_text("spec.name", &spec.name, 128)?;
    let vcpus = if spec.vcpus == 0 {
        limits.default_vcpus
    } else {
        spec.vcpus
    };
    if vcpus > limits.max_vcpus {
        return Err(bad(
            "spec.vcpus",
            format!(
                "must be 1..={} (the node's max_vcpus; 0 means the default {}), got {}",
                limits.max_vcpus, limits.default_vcpus, spec.vcpus
            ),
        ));
    }
    let memory_mib = if spec.memory_mib == 0 {
        limits.default_memory_mib
    } else {
        spec.memory_mib
    };
    if !(limits.min_memory_mib..=limits.max_memory_mib).contains(&memory_mib) {
        return Err(bad(
            "spec.memory_mib",
            format!(
                "must be {}..={} MiB (0 means the default {}), got {}",
                limits.min_memory_mib,
                limits.max_memory_mib,
                limits.default_memory_mib,
                spec.memory_mib
            ),
        ));
    }
    if spec.disks.len() > MAX_DISKS {
        return Err(bad(
            "spec.disks",
            format!("at most {MAX_DISKS} disks, got {}", spec.disks.len()),
        ));
    }
    let mut disks = Vec::new();
    for (i, d) in spec.disks.iter().enumerate() {
        let path = check_file(
            &limits.paths,
            RootKind::Volume,
            &format!("spec.disks[{i}].path"),
            &d.path,
            !d.read_only,
            "a raw image or block device",
        )?;
        disks.push(DiskSpec {
            path,
            read_only: d.read_only,
            bandwidth_bps: d.bandwidth_bps,
            iops: d.iops,
        });
    }
    let guest = match &spec.guest {
        None => {
            return Err(bad(
                "spec.guest",
                "is required: set `workload` (colo's workload guest) or `linux`",
            ));
        }
        Some(pb::job_spec::Guest::Workload(w)) => {
            if !(0..=MAX_GUEST_EXIT_CODE).contains(&w.exit_code) {
                return Err(bad(
                    "spec.workload.exit_code",
                    format!("must be 0..={MAX_GUEST_EXIT_CODE}, got {}", w.exit_code),
                ));
            }
            if w.hold_seconds > MAX_HOLD_SECONDS {
                return Err(bad(
                    "spec.workload.hold_seconds",
                    format!("must be at most {MAX_HOLD_SECONDS}, got {}", w.hold_seconds),
                ));
            }
            if w.mem_mib > memory_mib {
                return Err(bad(
                    "spec.workload.mem_mib",
                    format!(
                        "must fit in the guest's memory ({memory_mib} MiB), got {}",
                        w.mem_mib
                    ),
                ));
            }
            if !w.io.is_empty() {
                let ok = w.io.split_once(':').is_some_and(|(op, rest)| {
                    let n = rest.strip_suffix(":forever").unwrap_or(rest);
                    matches!(op, "read" | "write") && n.parse::<u64>().is_ok_and(|n| n > 0)
                });
                if !ok {
                    return Err(bad(
                        "spec.workload.io",
                        format!(
                            "must be empty, read:MiB or write:MiB (optionally :forever), got {:?}",
                            truncate(&w.io)
                        ),
                    ));
                }
                if disks.is_empty() {
                    return Err(bad("spec.workload.io", "needs a disk in spec.disks"));
                }
            }
            Guest::Workload(WorkloadGuest {
                cpu_units: w.cpu_units,
                mem_mib: w.mem_mib,
                hold_seconds: w.hold_seconds,
                exit_code: w.exit_code,
                io: w.io.clone(),
                cpu_forever: w.cpu_forever,
            })
        }
        Some(pb::job_spec::Guest::Linux(l)) => {
            let kernel = check_file(
                &limits.paths,
                RootKind::Image,
                "spec.linux.kernel_path",
                &l.kernel_path,
                false,
                "an uncompressed vmlinux with a PVH entry",
            )?;
            let rootfs = if l.rootfs_path.is_empty() {
                None
            } else {
                Some(check_file(
                    &limits.paths,
                    RootKind::Image,
                    "spec.linux.rootfs_path",
                    &l.rootfs_path,
                    false,
                    "a root filesystem image",
                )?)
            };
            if l.cmdline.len() > 2048 || l.cmdline.contains(['\n', '\0']) {
                return Err(bad(
                    "spec.linux.cmdline",
                    "must be one line of at most 2048 bytes",
                ));
            }
            Guest::Linux(LinuxGuest {
                kernel,
                rootfs,
                cmdline: l.cmdline.clone(),
            })
        }
    };
    let qos_class = match pb::QosClass::try_from(spec.qos_class) {
        Ok(pb::QosClass::Unspecified | pb::QosClass::Batch) => QosClass::Batch,
        Ok(pb::QosClass::Mid) => QosClass::Mid,
        Err(_) => {
            return Err(bad(
                "spec.qos_class",
                format!(
                    "must be QOS_CLASS_BATCH or QOS_CLASS_MID, got {}",
                    spec.qos_class
                ),
            ));
        }
    };
    if spec.deadline_seconds > MAX_DEADLINE_SECONDS {
        return Err(bad(
            "spec.deadline_seconds",
            format!(
                "must be at most {MAX_DEADLINE_SECONDS} (30 days), got {}",
                spec.deadline_seconds
            ),
        ));
    }
    Ok(JobSpec {
        idempotency_key: spec.idempotency_key.clone(),
        name: spec.name.clone(),
        guest,
        vcpus,
        memory_mib,
        disks,
        qos_class,
        priority: spec.priority,
        labels: check_labels(&spec.labels)?,
        deadline_seconds: spec.deadline_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> pb::JobSpec {
        pb::JobSpec {
            idempotency_key: "launcher-1:attempt-0".into(),
            guest: Some(pb::job_spec::Guest::Workload(pb::WorkloadGuest {
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
            (Box::new(|s| s.guest = None), "spec.guest", "required"),
            (
                Box::new(|s| {
                    s.guest = Some(pb::job_spec::Guest::Workload(pb::WorkloadGuest {
                        exit_code: 64,
                        ..Default::default()
                    }))
                }),
                "spec.workload.exit_code",
                "0..=63",
            ),
            (
                Box::new(|s| {
                    s.guest = Some(pb::job_spec::Guest::Workload(pb::WorkloadGuest {
                        io: "write:5".into(),
                        ..Default::default()
                    }))
                }),
                "spec.workload.io",
                "needs a disk",
            ),
            (
                Box::new(|s| {
                    s.guest = Some(pb::job_spec::Guest::Workload(pb::WorkloadGuest {
                        io: "write:5:sometimes".into(),
                        ..Default::default()
                    }))
                }),
                "spec.workload.io",
                ":forever",
            ),
            (
                Box::new(|s| {
                    s.guest = Some(pb::job_spec::Guest::Workload(pb::WorkloadGuest {
                        io: "sideways".into(),
                        ..Default::default()
                    }))
                }),
                "spec.workload.io",
                "read:MiB",
            ),
            (
                Box::new(|s| {
                    s.guest = Some(pb::job_spec::Guest::Linux(pb::LinuxGuest {
                        kernel_path: "vmlinux".into(),
                        ..Default::default()
                    }))
                }),
                "spec.linux.kernel_path",
                "absolute",
            ),
            (
                Box::new(|s| {
                    s.guest = Some(pb::job_spec::Guest::Linux(pb::LinuxGuest {
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
