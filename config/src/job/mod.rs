//! The offline job spec: one model for every place a job is described.
//!
//! | shape | where | how it becomes a [`JobSpec`] |
//! |---|---|---|
//! | job file (YAML/JSON) | `coloctl submit -f` | [`JobFile::parse`] → [`JobFile::to_spec`] |
//! | wire (`colo.agent.v1.JobSpec`) | the agent's API | `TryFrom` in colo-proto (`colo_proto::job`) |
//! | stored (JSON) | the agent's registry, `job.json` | serde (the derives below) |
//!
//! The guest sections ([`WorkloadGuest`], [`LinuxGuest`]) and [`DiskSpec`] read the same in a job
//! file and in `job.json`, so a new setting there is one field here, one in `agent.proto` and
//! one line each way in colo-proto's conversion; [`validate`] holds the rules a setting obeys.
//! The agent checks a submitted spec with [`JobSpec::validate`], which also fills in the node's
//! defaults (a 0 in `vcpus` or `memory_mib` means "the node's default").

mod file;
mod throttle;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use file::{JobFile, JobFileError};
pub use throttle::ThrottleState;
pub use validate::{ECHO_LIMIT, FieldError, PathAccess, PathKind, SpecLimits, truncate};

/// The sandbox a job runs in, with its settings: the job's `sandbox` (a job file names it by its
/// section, the wire by its `sandbox` case, coloctl by `--sandbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guest {
    /// colo's workload guest in a MicroVM (CPU, memory and IO hog with a progress counter).
    Workload(WorkloadGuest),
    /// A Linux kernel with a root filesystem, in a MicroVM.
    Linux(LinuxGuest),
    /// A user program in an OCI container (run by runc or crun) on the node's kernel.
    Container(Program),
}

impl Guest {
    /// The kind of sandbox.
    pub fn kind(&self) -> SandboxKind {
        match self {
            Self::Workload(_) => SandboxKind::Workload,
            Self::Linux(_) => SandboxKind::Linux,
            Self::Container(_) => SandboxKind::Container,
        }
    }
}

/// The kinds of sandbox a job can ask for, and a node can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxKind {
    /// colo's workload guest in a MicroVM.
    Workload,
    /// A Linux guest in a MicroVM.
    Linux,
    /// An OCI container.
    Container,
}

impl SandboxKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::Workload, Self::Linux, Self::Container];

    /// The name a job file, coloctl and the node report use (`container`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::Linux => "linux",
            Self::Container => "container",
        }
    }

    /// Parses a name of [`Self::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A user program and what it sees: the settings every real sandbox shares (a container today,
/// a Linux guest's in-guest agent as well).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Program {
    /// The root filesystem: a directory, an OCI image layout or a `docker save` tarball,
    /// beneath the node's `offline.image_roots` (empty until given: validation requires it).
    pub image: PathBuf,
    /// The program to run (a path inside the image, or a name looked up on `PATH`); empty: the
    /// image configuration's `Entrypoint` and `Cmd`.
    pub command: String,
    /// Its arguments (with an empty command: they replace the image's `Cmd` after its
    /// `Entrypoint`).
    pub args: Vec<String>,
    /// Environment variables, over the image configuration's `Env` (and a default `PATH` when
    /// neither sets one).
    pub env: BTreeMap<String, String>,
    /// The working directory inside the image (empty: the image's `WorkingDir`, else `/`).
    pub workdir: String,
    /// The numeric user and group it runs as (none: the image's `User`, else 0:0, without the
    /// capabilities a host root has).
    pub user: Option<User>,
    /// Host directories it sees.
    pub volumes: Vec<Volume>,
}

/// A numeric user and group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A host directory mounted into the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Volume {
    /// The host directory, beneath the node's `offline.volume_roots`.
    pub source: PathBuf,
    /// Where it appears inside (an absolute path).
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// Parses coloctl's `SRC:DST[:ro|:rw]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
            return Err(format!("`{s}` is not SRC:DST[:ro]"));
        };
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => return Err(format!("`{other}` in `{s}` is neither ro nor rw")),
        };
        if parts.next().is_some() || src.is_empty() || dst.is_empty() {
            return Err(format!("`{s}` is not SRC:DST[:ro]"));
        }
        Ok(Self {
            source: src.into(),
            target: dst.into(),
            read_only,
        })
    }
}

/// colo's workload guest; the fields become its command line keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadGuest {
    /// Work units of CPU (`cpu=`).
    pub cpu_units: u64,
    /// MiB of memory to touch (`mem=`).
    pub mem_mib: u64,
    /// Seconds to idle after the work (`hold=`).
    pub hold_seconds: u64,
    /// The guest's exit code (`exit=`, 0..=63).
    pub exit_code: i32,
    /// Disk IO: empty, `read:MiB` or `write:MiB` (`io=`).
    pub io: String,
    /// Burn CPU until stopped (`cpu=forever`).
    pub cpu_forever: bool,
}

impl WorkloadGuest {
    /// The guest command line.
    pub fn cmdline(&self) -> String {
        let mut parts = Vec::new();
        if self.cpu_forever {
            parts.push("cpu=forever".into());
        } else if self.cpu_units > 0 {
            parts.push(format!("cpu={}", self.cpu_units));
        }
        if self.mem_mib > 0 {
            parts.push(format!("mem={}", self.mem_mib));
        }
        if self.hold_seconds > 0 {
            parts.push(format!("hold={}", self.hold_seconds));
        }
        if !self.io.is_empty() {
            parts.push(format!("io={}", self.io));
        }
        parts.push(format!("exit={}", self.exit_code));
        parts.join(" ")
    }
}

/// A Linux guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxGuest {
    /// Uncompressed `vmlinux` with a PVH entry (empty until given: validation requires it).
    #[serde(default)]
    pub kernel: PathBuf,
    /// Root filesystem image (attached as the first disk), if any.
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// A user program run by colo's in-guest agent (the guest image's `/init`), in a root
    /// filesystem made from `image`: a job with a program boots the node's Linux guest kernel
    /// and image (`offline.linux`) unless it names a kernel, and takes no `rootfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<Program>,
}

impl LinuxGuest {
    /// A Linux guest that runs `program` on the node's guest kernel and image.
    pub fn program(program: Program) -> Self {
        Self {
            program: Some(program),
            ..Self::default()
        }
    }
}

/// A disk of the job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Host path of a raw image or block device (empty until given: validation requires it).
    #[serde(default)]
    pub path: PathBuf,
    /// Attach read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Bytes per second (0 = unlimited).
    #[serde(default)]
    pub bandwidth_bps: u64,
    /// Operations per second (0 = unlimited).
    #[serde(default)]
    pub iops: u64,
}

/// The offline QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QosClass {
    /// Best effort: squeezed and evicted first.
    #[default]
    Batch,
    /// Batch with a higher floor.
    Mid,
}

/// A QoS class name that is neither `batch` nor `mid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("qos_class must be batch or mid, got {0:?}")]
pub struct UnknownQosClass(pub String);

impl QosClass {
    /// Parses `batch` / `mid`, as a job file and coloctl's `--qos-class` spell them.
    pub fn from_name(s: &str) -> Result<Self, UnknownQosClass> {
        match s {
            "batch" => Ok(Self::Batch),
            "mid" => Ok(Self::Mid),
            other => Err(UnknownQosClass(other.to_string())),
        }
    }
}

/// A job spec. Once [validated](JobSpec::validate), its defaults are filled in: that is the
/// spec the agent runs and stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Makes SubmitJob idempotent.
    pub idempotency_key: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// The guest.
    pub guest: Guest,
    /// vCPUs (0 = the node's default, until validated).
    pub vcpus: u32,
    /// Guest memory in MiB (0 = the node's default, until validated).
    pub memory_mib: u64,
    /// Disks.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// QoS class.
    #[serde(default)]
    pub qos_class: QosClass,
    /// Eviction order within a class (higher goes later).
    #[serde(default)]
    pub priority: i32,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Seconds from start after which the job is stopped (0 = none).
    #[serde(default)]
    pub deadline_seconds: u64,
}

impl JobSpec {
    /// A spec of `guest` with everything else empty or the node's default.
    pub fn new(idempotency_key: impl Into<String>, guest: Guest) -> Self {
        Self {
            idempotency_key: idempotency_key.into(),
            name: String::new(),
            guest,
            vcpus: 0,
            memory_mib: 0,
            disks: Vec::new(),
            qos_class: QosClass::Batch,
            priority: 0,
            labels: BTreeMap::new(),
            deadline_seconds: 0,
        }
    }

    /// CPU the job reserves from the offline budget (one core per vCPU).
    pub fn reserved_millicores(&self) -> u64 {
        u64::from(self.vcpus) * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_cmdline() {
        let g = WorkloadGuest {
            cpu_units: 100,
            hold_seconds: 2,
            exit_code: 3,
            ..Default::default()
        };
        assert_eq!(g.cmdline(), "cpu=100 hold=2 exit=3");
        assert_eq!(WorkloadGuest::default().cmdline(), "exit=0");
    }

    #[test]
    fn the_stored_form_keeps_its_field_names() {
        let mut spec = JobSpec::new("k", Guest::Workload(WorkloadGuest::default()));
        spec.vcpus = 1;
        spec.memory_mib = 32;
        let text = serde_json::to_string(&spec).unwrap();
        assert!(
            text.starts_with(
                r#"{"idempotency_key":"k","name":"","guest":{"workload":{"cpu_units":0,"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""qos_class":"batch""#), "{text}");
        let back: JobSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
    }
}
