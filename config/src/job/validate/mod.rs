//! The rules a job spec obeys, beside the model they check. Each refusal names the field as the
//! wire spells it and the rule (`spec.vcpus: must be 1..=2 (the node's max_vcpus), got 9`); the
//! agent answers it as `InvalidArgument`.
//!
//! Whether a client may name a host file (a kernel, an image, a disk) is the node's to decide:
//! validation asks a [`PathAccess`], which the agent implements by opening the file as the VMM
//! will.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Guest, JobSpec};

mod program;

pub use program::{MAX_ARGS, MAX_ENV, MAX_PROGRAM_BYTES, MAX_VOLUMES};

/// A field that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// The field's path in the request (`spec.workload.exit_code`).
    pub field: String,
    /// The rule and the value seen.
    pub rule: String,
}

impl FieldError {
    /// `field` broke `rule`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

fn bad(field: &str, rule: impl Into<String>) -> FieldError {
    FieldError::new(field, rule)
}

/// Longest input echoed back in an error or an audit line.
pub const ECHO_LIMIT: usize = 96;

/// `s` cut to [`ECHO_LIMIT`] characters (with the size of what was cut), so that neither an
/// error nor an audit line echoes a huge input back.
pub fn truncate(s: &str) -> String {
    let n = s.chars().count();
    if n <= ECHO_LIMIT {
        return s.to_string();
    }
    let head: String = s.chars().take(ECHO_LIMIT).collect();
    format!("{head}… ({n} characters)")
}

/// Most disks per job.
pub const MAX_DISKS: usize = 8;
/// Most labels per job.
pub const MAX_LABELS: usize = 64;
/// Longest deadline (30 days).
pub const MAX_DEADLINE_SECONDS: u64 = 30 * 24 * 3600;
/// Longest idle hold of the workload guest (7 days).
pub const MAX_HOLD_SECONDS: u64 = 7 * 24 * 3600;
/// Highest exit code the workload guest can report (colo-vmm's `GUEST_EXIT_CODE_MAX`; the agent
/// asserts that the two agree).
pub const MAX_GUEST_EXIT_CODE: i32 = 63;
/// Least guest memory colo-vmm boots (its `MIN_MEMORY_MIB`; the agent asserts that the two
/// agree).
pub const MIN_MEMORY_MIB: u64 = 8;

/// The roots a client-named host file must lie beneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Kernels, initramfs and root filesystem images (`offline.image_roots`).
    Image,
    /// Disks and volumes (`offline.volume_roots`).
    Volume,
}

/// Decides whether a client may name a host file.
pub trait PathAccess {
    /// `Ok` when the client may name `path` beneath the roots of `kind` (for writing when
    /// `write`); otherwise the reason, said to the client after the field's name.
    fn check(&self, kind: PathKind, path: &Path, write: bool) -> Result<(), String>;

    /// As [`check`](Self::check) for a directory a sandbox mounts: a volume must be a
    /// directory, an image a directory or an image file (an OCI layout or `docker save`
    /// tarball). By default the same rule as `check`.
    fn check_dir(&self, kind: PathKind, path: &Path, write: bool) -> Result<(), String> {
        self.check(kind, path, write)
    }

    /// Whether the image at `path` (already checked) is a plain root directory, which has no
    /// image configuration to take a command from. By default unknown: `false`.
    fn is_plain_root(&self, _path: &Path) -> bool {
        false
    }
}

/// The node's limits and defaults for job sizes, and `P`, what decides which host files a
/// client may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecLimits<P> {
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
    pub paths: P,
}

impl<P: Default> Default for SpecLimits<P> {
    fn default() -> Self {
        Self {
            default_vcpus: 1,
            max_vcpus: 8,
            default_memory_mib: 64,
            min_memory_mib: MIN_MEMORY_MIB,
            max_memory_mib: 64 * 1024,
            paths: P::default(),
        }
    }
}

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

/// Checks that the client may name `p` (beneath a root of `kind`).
fn check_file(
    access: &impl PathAccess,
    kind: PathKind,
    field: &str,
    p: &Path,
    write: bool,
    what: &str,
) -> Result<(), FieldError> {
    check_len(field, p, what)?;
    access.check(kind, p, write).map_err(|e| bad(field, e))
}

/// Checks that the client may name the directory (or image) `p` beneath a root of `kind`.
fn check_dir(
    access: &impl PathAccess,
    kind: PathKind,
    field: &str,
    p: &Path,
    write: bool,
    what: &str,
) -> Result<(), FieldError> {
    check_len(field, p, what)?;
    access.check_dir(kind, p, write).map_err(|e| bad(field, e))
}

fn check_len(field: &str, p: &Path, what: &str) -> Result<(), FieldError> {
    let len = p.as_os_str().len();
    if len == 0 {
        return Err(bad(field, format!("is required ({what})")));
    }
    if len > 4096 {
        return Err(bad(field, format!("must be at most 4096 bytes, got {len}")));
    }
    Ok(())
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(bad(
            "spec.labels",
            format!("at most {MAX_LABELS} labels, got {}", labels.len()),
        ));
    }
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
    }
    Ok(())
}

/// Checks the workload guest's settings against the guest's memory and the job's disks.
fn check_workload(
    w: &super::WorkloadGuest,
    memory_mib: u64,
    has_disk: bool,
) -> Result<(), FieldError> {
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
        if !has_disk {
            return Err(bad("spec.workload.io", "needs a disk in spec.disks"));
        }
    }
    Ok(())
}

/// Checks a Linux guest: its kernel and root filesystem may be named, its command line is one
/// line.
fn check_linux(l: &super::LinuxGuest, access: &impl PathAccess) -> Result<(), FieldError> {
    if let Some(p) = &l.program {
        // The node's guest kernel and image run the program (in a root made from its image).
        if l.rootfs.is_some() {
            return Err(bad(
                "spec.linux.rootfs_path",
                "a job with a program runs in a root filesystem made from program.image; drop rootfs_path",
            ));
        }
        if let Some(i) = p.volumes.iter().position(|v| !v.read_only) {
            return Err(bad(
                &format!("spec.linux.program.volumes[{i}]"),
                "a Linux guest takes host directories read-only (each becomes a read-only disk; \
                 the host never mounts what a guest writes): set read_only, and return results \
                 on the program's output or a disk in spec.disks",
            ));
        }
        program::check_program("spec.linux.program", p, access)?;
    }
    if l.program.is_none() || !l.kernel.as_os_str().is_empty() {
        check_file(
            access,
            PathKind::Image,
            "spec.linux.kernel_path",
            &l.kernel,
            false,
            "an uncompressed vmlinux with a PVH entry",
        )?;
    }
    if let Some(rootfs) = &l.rootfs {
        check_file(
            access,
            PathKind::Image,
            "spec.linux.rootfs_path",
            rootfs,
            false,
            "a root filesystem image",
        )?;
    }
    if l.cmdline.len() > 2048 || l.cmdline.contains(['\n', '\0']) {
        return Err(bad(
            "spec.linux.cmdline",
            "must be one line of at most 2048 bytes",
        ));
    }
    Ok(())
}

impl JobSpec {
    /// Checks the spec against the node's limits and fills in its defaults (vCPUs and memory
    /// given as 0): the spec the agent admits.
    pub fn validate<P: PathAccess>(mut self, limits: &SpecLimits<P>) -> Result<Self, FieldError> {
        check_key("spec.idempotency_key", &self.idempotency_key)?;
        check_text("spec.name", &self.name, 128)?;
        let asked_vcpus = self.vcpus;
        if self.vcpus == 0 {
            self.vcpus = limits.default_vcpus;
        }
        if self.vcpus > limits.max_vcpus {
            return Err(bad(
                "spec.vcpus",
                format!(
                    "must be 1..={} (the node's max_vcpus; 0 means the default {}), got {}",
                    limits.max_vcpus, limits.default_vcpus, asked_vcpus
                ),
            ));
        }
        let asked_memory = self.memory_mib;
        if self.memory_mib == 0 {
            self.memory_mib = limits.default_memory_mib;
        }
        if !(limits.min_memory_mib..=limits.max_memory_mib).contains(&self.memory_mib) {
            return Err(bad(
                "spec.memory_mib",
                format!(
                    "must be {}..={} MiB (0 means the default {}), got {}",
                    limits.min_memory_mib,
                    limits.max_memory_mib,
                    limits.default_memory_mib,
                    asked_memory
                ),
            ));
        }
        if self.disks.len() > MAX_DISKS {
            return Err(bad(
                "spec.disks",
                format!("at most {MAX_DISKS} disks, got {}", self.disks.len()),
            ));
        }
        for (i, d) in self.disks.iter().enumerate() {
            check_file(
                &limits.paths,
                PathKind::Volume,
                &format!("spec.disks[{i}].path"),
                &d.path,
                !d.read_only,
                "a raw image or block device",
            )?;
        }
        match &self.guest {
            Guest::Workload(w) => check_workload(w, self.memory_mib, !self.disks.is_empty())?,
            Guest::Linux(l) => check_linux(l, &limits.paths)?,
            Guest::Container(p) => {
                if !self.disks.is_empty() {
                    return Err(bad(
                        "spec.disks",
                        "a container takes host directories as volumes, not disk images",
                    ));
                }
                program::check_program("spec.container", p, &limits.paths)?;
            }
        }
        if self.deadline_seconds > MAX_DEADLINE_SECONDS {
            return Err(bad(
                "spec.deadline_seconds",
                format!(
                    "must be at most {MAX_DEADLINE_SECONDS} (30 days), got {}",
                    self.deadline_seconds
                ),
            ));
        }
        check_labels(&self.labels)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{DiskSpec, WorkloadGuest};

    /// A node where every file may be named.
    #[derive(Debug, Default)]
    struct Anywhere;
    impl PathAccess for Anywhere {
        fn check(&self, _: PathKind, _: &Path, _: bool) -> Result<(), String> {
            Ok(())
        }
    }

    /// A node where no file may be named.
    #[derive(Debug, Default)]
    struct Nowhere;
    impl PathAccess for Nowhere {
        fn check(&self, kind: PathKind, _: &Path, write: bool) -> Result<(), String> {
            Err(format!("no {kind:?} may be named (write: {write})"))
        }
    }

    fn workload() -> JobSpec {
        JobSpec::new(
            "launcher-1:attempt-0",
            Guest::Workload(WorkloadGuest {
                cpu_units: 10,
                ..Default::default()
            }),
        )
    }

    #[test]
    fn defaults_are_filled_in() {
        let s = workload()
            .validate(&SpecLimits::<Anywhere>::default())
            .unwrap();
        assert_eq!((s.vcpus, s.memory_mib), (1, 64));
    }

    #[test]
    fn the_node_decides_which_files_may_be_named() {
        let mut s = workload();
        s.disks.push(DiskSpec {
            path: "/v/d.img".into(),
            ..Default::default()
        });
        assert!(
            s.clone()
                .validate(&SpecLimits::<Anywhere>::default())
                .is_ok()
        );
        let e = s.validate(&SpecLimits::<Nowhere>::default()).unwrap_err();
        assert_eq!(e.field, "spec.disks[0].path");
        assert_eq!(e.rule, "no Volume may be named (write: true)");
        let mut s = workload();
        s.disks.push(DiskSpec::default());
        let e = s.validate(&SpecLimits::<Anywhere>::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.disks[0].path: is required (a raw image or block device)"
        );
    }

    #[test]
    fn long_input_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("short"), "short");
        let t = truncate(&"é".repeat(100_000));
        assert!(t.len() < 400, "{}", t.len());
        assert!(t.ends_with("(100000 characters)"), "{t}");
    }
}
