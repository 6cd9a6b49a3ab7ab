//! The job a guest runs ([`RunSpec`]): what the `Run` message carries, and the bounds every field
//! must keep.
//!
//! The guest validates a spec before acting on it (it came from the peer), and the host
//! validates it before sending (so an operator learns of a bad spec at submission, not from the
//! guest). Identities are numeric: the guest's init is a static binary with no name service.

use crate::wire::{Reader, WireError, put_count, put_str, put_u32, put_u64};

/// Longest path (command, working directory, root device), in bytes.
pub const MAX_PATH: usize = 4096;
/// Most arguments after the command.
pub const MAX_ARGS: usize = 1024;
/// Most environment entries.
pub const MAX_ENV: usize = 1024;
/// Longest single argument or environment entry, in bytes.
pub const MAX_STRING: usize = 16 * 1024;
/// Most resource limits.
pub const MAX_RLIMITS: usize = 16;
/// Longest host name (Linux's `HOST_NAME_MAX`).
pub const MAX_HOSTNAME: usize = 64;
/// Longest file system type name.
pub const MAX_FSTYPE: usize = 16;
/// Most volumes.
pub const MAX_VOLUMES: usize = 16;
/// The largest encoded spec: the bound of the `Run` message's payload.
pub const MAX_ENCODED: usize = 64 * 1024;

/// Errors of a job spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field could not be read from the payload.
    #[error("run spec: {0}")]
    Wire(#[from] WireError),
    /// A path field is not an absolute path.
    #[error("run spec: {field} {value:?} is not an absolute path")]
    NotAbsolute {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A string holds a NUL byte, which no system call can carry.
    #[error("run spec: {field} holds a NUL byte")]
    Nul {
        /// The field.
        field: &'static str,
    },
    /// A field is longer, or a list has more entries, than allowed.
    #[error("run spec: {field} is {len} long, the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// An environment entry is not `KEY=VALUE` with a non-empty key.
    #[error("run spec: environment entry {0:?} is not KEY=VALUE")]
    BadEnv(String),
    /// The host name is empty or holds characters other than letters, digits, `-` and `.`.
    #[error("run spec: host name {0:?} is not letters, digits, '-' and '.'")]
    BadHostname(String),
    /// The root device is not a plain path under `/dev/`.
    #[error("run spec: root device {0:?} is not a path under /dev/")]
    BadDevice(String),
    /// A volume's target is not an absolute path other than `/` without `..`, or is given twice.
    #[error("run spec: volume target {0:?} is not an absolute path (not /, no ..) of its own")]
    BadTarget(String),
    /// The root file system type is not a plain lower-case name.
    #[error("run spec: file system type {0:?} is not a lower-case name")]
    BadFsType(String),
    /// A resource limit's soft value is above its hard value.
    #[error("run spec: {resource:?} soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard {
        /// The resource.
        resource: Resource,
        /// The soft limit.
        soft: u64,
        /// The hard limit.
        hard: u64,
    },
    /// A resource is limited twice.
    #[error("run spec: {0:?} is limited twice")]
    DuplicateRlimit(Resource),
    /// The whole spec is too large for one `Run` message.
    #[error(
        "run spec: {len} bytes encoded, the limit is {MAX_ENCODED} (fewer or shorter arguments and environment entries)"
    )]
    TooLarge {
        /// Its encoded size.
        len: usize,
    },
}

/// A resource limit's resource, numbered as Linux numbers them (`RLIMIT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // The names are Linux's.
pub enum Resource {
    Cpu = 0,
    Fsize = 1,
    Data = 2,
    Stack = 3,
    Core = 4,
    Rss = 5,
    Nproc = 6,
    Nofile = 7,
    Memlock = 8,
    As = 9,
    Locks = 10,
    Sigpending = 11,
    Msgqueue = 12,
    Nice = 13,
    Rtprio = 14,
    Rttime = 15,
}

impl Resource {
    /// Every resource, in Linux's order.
    pub const ALL: [Resource; 16] = [
        Self::Cpu,
        Self::Fsize,
        Self::Data,
        Self::Stack,
        Self::Core,
        Self::Rss,
        Self::Nproc,
        Self::Nofile,
        Self::Memlock,
        Self::As,
        Self::Locks,
        Self::Sigpending,
        Self::Msgqueue,
        Self::Nice,
        Self::Rtprio,
        Self::Rttime,
    ];

    /// The resource with Linux's number `n`.
    pub fn from_linux(n: u8) -> Option<Self> {
        Self::ALL.get(usize::from(n)).copied()
    }

    /// Linux's number of the resource.
    pub fn linux(self) -> u8 {
        self as u8
    }
}

/// One resource limit. `u64::MAX` is "unlimited" (Linux's `RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The resource.
    pub resource: Resource,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// The job's root file system: a read-only block device, made writable with an overlay on a
/// tmpfs in the guest, with read-only volumes mounted in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDisk {
    /// The device, e.g. `/dev/vda`.
    pub device: String,
    /// Its file system type, e.g. `ext4`.
    pub fstype: String,
    /// Disks mounted read-only inside the root (at most [`MAX_VOLUMES`]).
    pub volumes: Vec<VolumeDisk>,
}

/// A read-only disk mounted inside the job's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDisk {
    /// The device, e.g. `/dev/vdb`.
    pub device: String,
    /// Its file system type, e.g. `ext4`.
    pub fstype: String,
    /// Where it appears in the root: an absolute path, not `/`, without `..`.
    pub target: String,
}

/// The job: one command, run once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The program, an absolute path inside the job's root.
    pub path: String,
    /// Its arguments after `argv[0]` (which is `path`).
    pub args: Vec<String>,
    /// The whole environment, `KEY=VALUE` entries (nothing is inherited from the guest's init).
    pub env: Vec<String>,
    /// The working directory, an absolute path inside the job's root.
    pub workdir: String,
    /// The user id the command runs as.
    pub uid: u32,
    /// The group id the command runs as (its only group).
    pub gid: u32,
    /// Resource limits set before the command starts.
    pub rlimits: Vec<Rlimit>,
    /// The guest's host name.
    pub hostname: String,
    /// The root file system; `None` runs the command in the guest's initramfs.
    pub root: Option<RootDisk>,
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), SpecError> {
    if len > max {
        Err(SpecError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn check_str(field: &'static str, s: &str, max: usize) -> Result<(), SpecError> {
    check_len(field, s.len(), max)?;
    if s.contains('\0') {
        return Err(SpecError::Nul { field });
    }
    Ok(())
}

fn check_abs(field: &'static str, s: &str) -> Result<(), SpecError> {
    check_str(field, s, MAX_PATH)?;
    if !s.starts_with('/') {
        return Err(SpecError::NotAbsolute {
            field,
            value: s.to_owned(),
        });
    }
    Ok(())
}

/// Checks a disk: a plain path under `/dev/` and a lower-case file system name.
fn check_disk(device: &str, fstype: &str) -> Result<(), SpecError> {
    if device.len() > MAX_PATH
        || !device.starts_with("/dev/")
        || device.len() == "/dev/".len()
        || device.contains('\0')
        || device.split('/').any(|c| c == "..")
    {
        return Err(SpecError::BadDevice(device.to_owned()));
    }
    if fstype.is_empty()
        || fstype.len() > MAX_FSTYPE
        || !fstype
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(SpecError::BadFsType(fstype.to_owned()));
    }
    Ok(())
}

impl RunSpec {
    /// Checks every bound and rule of the spec.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_abs("command path", &self.path)?;
        check_abs("working directory", &self.workdir)?;
        check_len("arguments", self.args.len(), MAX_ARGS)?;
        for a in &self.args {
            check_str("argument", a, MAX_STRING)?;
        }
        check_len("environment", self.env.len(), MAX_ENV)?;
        for e in &self.env {
            check_str("environment entry", e, MAX_STRING)?;
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() => {}
                _ => return Err(SpecError::BadEnv(e.clone())),
            }
        }
        check_len("resource limits", self.rlimits.len(), MAX_RLIMITS)?;
        for (i, l) in self.rlimits.iter().enumerate() {
            if l.soft > l.hard {
                return Err(SpecError::SoftAboveHard {
                    resource: l.resource,
                    soft: l.soft,
                    hard: l.hard,
                });
            }
            if self.rlimits[..i].iter().any(|o| o.resource == l.resource) {
                return Err(SpecError::DuplicateRlimit(l.resource));
            }
        }
        let h = &self.hostname;
        if h.is_empty()
            || h.len() > MAX_HOSTNAME
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(SpecError::BadHostname(h.clone()));
        }
        if let Some(root) = &self.root {
            check_disk(&root.device, &root.fstype)?;
            check_len("volumes", root.volumes.len(), MAX_VOLUMES)?;
            for (i, v) in root.volumes.iter().enumerate() {
                check_disk(&v.device, &v.fstype)?;
                let t = &v.target;
                if t.len() > MAX_PATH
                    || !t.starts_with('/')
                    || t.trim_end_matches('/').is_empty()
                    || t.contains('\0')
                    || t.split('/').any(|c| c == "..")
                    || root.volumes[..i].iter().any(|o| o.target == *t)
                {
                    return Err(SpecError::BadTarget(t.clone()));
                }
            }
        }
        let mut encoded = Vec::new();
        self.encode(&mut encoded);
        if encoded.len() > MAX_ENCODED {
            return Err(SpecError::TooLarge { len: encoded.len() });
        }
        Ok(())
    }

    /// Appends the spec's fields to a payload. The spec must have passed [`RunSpec::validate`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.path);
        put_count(out, self.args.len());
        for a in &self.args {
            put_str(out, a);
        }
        put_count(out, self.env.len());
        for e in &self.env {
            put_str(out, e);
        }
        put_str(out, &self.workdir);
        put_u32(out, self.uid);
        put_u32(out, self.gid);
        put_count(out, self.rlimits.len());
        for l in &self.rlimits {
            out.push(l.resource.linux());
            put_u64(out, l.soft);
            put_u64(out, l.hard);
        }
        put_str(out, &self.hostname);
        match &self.root {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                put_str(out, &r.device);
                put_str(out, &r.fstype);
                put_count(out, r.volumes.len());
                for v in &r.volumes {
                    put_str(out, &v.device);
                    put_str(out, &v.fstype);
                    put_str(out, &v.target);
                }
            }
        }
    }

    /// Reads a spec from a payload and validates it.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, SpecError> {
        let path = r.string("command path", MAX_PATH)?;
        let n = r.count("arguments", MAX_ARGS)?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            args.push(r.string("argument", MAX_STRING)?);
        }
        let n = r.count("environment", MAX_ENV)?;
        let mut env = Vec::with_capacity(n);
        for _ in 0..n {
            env.push(r.string("environment entry", MAX_STRING)?);
        }
        let workdir = r.string("working directory", MAX_PATH)?;
        let uid = r.u32("uid")?;
        let gid = r.u32("gid")?;
        let n = r.count("resource limits", MAX_RLIMITS)?;
        let mut rlimits = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.u8("resource")?;
            let resource = Resource::from_linux(code).ok_or(WireError::BadValue {
                field: "resource",
                value: u64::from(code),
            })?;
            let soft = r.u64("soft limit")?;
            let hard = r.u64("hard limit")?;
            rlimits.push(Rlimit {
                resource,
                soft,
                hard,
            });
        }
        let hostname = r.string("host name", MAX_HOSTNAME)?;
        let root = match r.u8("root")? {
            0 => None,
            1 => {
                let device = r.string("root device", MAX_PATH)?;
                let fstype = r.string("file system type", MAX_FSTYPE)?;
                let n = r.count("volumes", MAX_VOLUMES)?;
                let mut volumes = Vec::with_capacity(n);
                for _ in 0..n {
                    volumes.push(VolumeDisk {
                        device: r.string("volume device", MAX_PATH)?,
                        fstype: r.string("file system type", MAX_FSTYPE)?,
                        target: r.string("volume target", MAX_PATH)?,
                    });
                }
                Some(RootDisk {
                    device,
                    fstype,
                    volumes,
                })
            }
            v => {
                return Err(WireError::BadValue {
                    field: "root",
                    value: u64::from(v),
                }
                .into());
            }
        };
        let spec = Self {
            path,
            args,
            env,
            workdir,
            uid,
            gid,
            rlimits,
            hostname,
            root,
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests;
