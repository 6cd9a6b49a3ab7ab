//! The container ecosystem's default seccomp profile, turned into the runtime spec's form.
//!
//! containers-common ships `seccomp.json`, the profile Podman and Docker apply by default. Its
//! rules are conditional: a rule holds only for some capabilities (`includes.caps`), host
//! architectures (`includes.arches`) or kernels (`includes.minKernel`), or not for others
//! (`excludes`). An OCI runtime takes no conditions, so [`from_containers_profile`] resolves them
//! for one container — its granted capabilities, the host's architecture and the running kernel —
//! the way Podman does, and returns the `linux.seccomp` section of a bundle's `config.json`.
//!
//! Architecture names: a profile's rules name Go's (`amd64`, `x86`, `x32`, `arm64`, ...); its
//! `archMap` names libseccomp's (`SCMP_ARCH_X86_64`). A rule's arch condition matches the host's
//! native architecture and the sub-architectures `archMap` lists for it (on x86_64 also `x86` and
//! `x32`, whose binaries the same filter covers).

use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

/// Where Debian's golang-github-containers-common-dev installs containers-common's default
/// seccomp profile.
pub const DEFAULT_PROFILE: &str =
    "/usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json";

/// Why a containers-common seccomp profile could not be turned into the runtime spec's form.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile file could not be read.
    #[error(
        "cannot read the seccomp profile {path}: {source}; install golang-github-containers-common-dev \
         or set offline.container.seccomp_profile to a containers-common seccomp.json"
    )]
    Unreadable {
        /// The profile's path.
        path: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The profile is not valid JSON of the containers-common format.
    #[error(
        "the seccomp profile is not a containers-common seccomp.json: {0}; point \
         offline.container.seccomp_profile at a valid profile"
    )]
    BadJson(#[from] serde_json::Error),
    /// The profile names an action the runtime spec does not know.
    #[error(
        "the seccomp profile names an unknown action {0:?} (known: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, \
         SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE, \
         SCMP_ACT_LOG, SCMP_ACT_NOTIFY); fix the profile"
    )]
    UnknownAction(String),
    /// The profile names an argument comparison the runtime spec does not know.
    #[error(
        "the seccomp profile names an unknown argument operator {0:?} (known: SCMP_CMP_NE, \
         SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ); \
         fix the profile"
    )]
    UnknownOperator(String),
    /// A `minKernel` condition is not `MAJOR.MINOR`.
    #[error("the seccomp profile has a minKernel {0:?} that is not MAJOR.MINOR; fix the profile")]
    BadKernelVersion(String),
}

/// containers-common's profile format (only the fields that shape the filter).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The container being confined: what a rule's conditions are checked against.
struct Host<'a> {
    caps: &'a [&'a str],
    /// Go's names for the native architecture and its sub-architectures.
    arches: Vec<&'static str>,
    kernel: (u32, u32),
}

impl Host<'_> {
    /// Whether `filter` holds: every listed capability granted, the arch among the listed ones,
    /// and the kernel at least `minKernel`. An empty filter holds.
    fn includes(&self, filter: &Filter) -> Result<bool, SeccompError> {
        let caps_ok = filter
            .caps
            .iter()
            .flatten()
            .all(|cap| self.caps.contains(&cap.as_str()));
        let arch_ok = match &filter.arches {
            Some(arches) if !arches.is_empty() => self.arch_listed(arches),
            _ => true,
        };
        let kernel_ok = match &filter.min_kernel {
            Some(min) if !min.is_empty() => self.kernel >= parse_kernel(min)?,
            _ => true,
        };
        Ok(caps_ok && arch_ok && kernel_ok)
    }

    /// Whether `filter` excludes the rule: any listed capability granted, the arch among the
    /// listed ones, or the kernel at least `minKernel`.
    fn excludes(&self, filter: &Filter) -> Result<bool, SeccompError> {
        let cap_hit = filter
            .caps
            .iter()
            .flatten()
            .any(|cap| self.caps.contains(&cap.as_str()));
        let arch_hit = filter
            .arches
            .as_deref()
            .is_some_and(|a| self.arch_listed(a));
        let kernel_hit = match &filter.min_kernel {
            Some(min) if !min.is_empty() => self.kernel >= parse_kernel(min)?,
            _ => false,
        };
        Ok(cap_hit || arch_hit || kernel_hit)
    }

    fn arch_listed(&self, arches: &[String]) -> bool {
        arches.iter().any(|a| self.arches.contains(&a.as_str()))
    }
}

/// Parses `MAJOR.MINOR` (a patch level or suffix after the minor number is ignored).
fn parse_kernel(text: &str) -> Result<(u32, u32), SeccompError> {
    let bad = || SeccompError::BadKernelVersion(text.to_owned());
    let mut parts = text.trim().splitn(3, '.');
    let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let minor_text = parts.next().ok_or_else(bad)?;
    let digits: String = minor_text
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let minor = digits.parse().map_err(|_| bad())?;
    Ok((major, minor))
}

/// Go's name (`GOARCH`) and libseccomp's name of the architecture this program was built for.
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "loongarch64" => ("loong64", "SCMP_ARCH_LOONGARCH64"),
        "mips64" => ("mips64", "SCMP_ARCH_MIPS64"),
        other => (other, "SCMP_ARCH_NATIVE"),
    }
}

/// Go's name of a libseccomp architecture, as a profile's `arches` conditions spell it.
fn go_arch_name(scmp: &str) -> Option<&'static str> {
    Some(match scmp {
        "SCMP_ARCH_X86_64" => "amd64",
        "SCMP_ARCH_X86" => "x86",
        "SCMP_ARCH_X32" => "x32",
        "SCMP_ARCH_AARCH64" => "arm64",
        "SCMP_ARCH_ARM" => "arm",
        "SCMP_ARCH_S390X" => "s390x",
        "SCMP_ARCH_S390" => "s390",
        "SCMP_ARCH_MIPS" => "mips",
        "SCMP_ARCH_MIPS64" => "mips64",
        "SCMP_ARCH_MIPS64N32" => "mips64n32",
        "SCMP_ARCH_MIPSEL" => "mipsel",
        "SCMP_ARCH_MIPSEL64" => "mipsel64",
        "SCMP_ARCH_MIPSEL64N32" => "mipsel64n32",
        "SCMP_ARCH_PPC64LE" => "ppc64le",
        "SCMP_ARCH_PPC64" => "ppc64",
        "SCMP_ARCH_RISCV64" => "riscv64",
        _ => return None,
    })
}

fn parse_action(text: &str) -> Result<LinuxSeccompAction, SeccompError> {
    LinuxSeccompAction::from_str(text).map_err(|_| SeccompError::UnknownAction(text.to_owned()))
}

fn parse_operator(text: &str) -> Result<LinuxSeccompOperator, SeccompError> {
    LinuxSeccompOperator::from_str(text).map_err(|_| SeccompError::UnknownOperator(text.to_owned()))
}

/// Converts containers-common's `seccomp.json` (its text in `json`) into the runtime spec's
/// `linux.seccomp` for a container granted `granted_caps` (e.g. `"CAP_CHOWN"`) on a host running
/// kernel `kernel` (`(major, minor)`, see [`running_kernel`]) on this program's architecture.
///
/// A rule is kept when its `includes` hold and its `excludes` do not; `architectures` lists the
/// native architecture and the sub-architectures the profile's `archMap` gives it.
pub fn from_containers_profile(
    json: &str,
    granted_caps: &[&str],
    kernel: (u32, u32),
) -> Result<LinuxSeccomp, SeccompError> {
    let profile: Profile = serde_json::from_str(json)?;
    let (go_native, scmp_native) = native_arch();
    let sub_arches: Vec<String> = profile
        .arch_map
        .iter()
        .flatten()
        .filter(|entry| entry.architecture == scmp_native)
        .flat_map(|entry| entry.sub_architectures.iter().flatten().cloned())
        .collect();
    let mut host = Host {
        caps: granted_caps,
        arches: vec![go_native],
        kernel,
    };
    host.arches
        .extend(sub_arches.iter().filter_map(|a| go_arch_name(a)));
    let architectures: Vec<Arch> = std::iter::once(scmp_native.to_owned())
        .chain(sub_arches)
        .filter_map(|name| Arch::from_str(&name).ok())
        .filter(|arch| *arch != Arch::ScmpArchNative)
        .collect();

    let mut syscalls = Vec::new();
    for rule in profile.syscalls.iter().flatten() {
        let action = parse_action(&rule.action)?;
        let args = rule
            .args
            .iter()
            .flatten()
            .map(|arg| {
                let mut builder = LinuxSeccompArgBuilder::default()
                    .index(arg.index)
                    .value(arg.value)
                    .op(parse_operator(&arg.op)?);
                if arg.value_two != 0 {
                    builder = builder.value_two(arg.value_two);
                }
                builder
                    .build()
                    .map_err(|e| SeccompError::UnknownOperator(format!("{}: {e}", arg.op)))
            })
            .collect::<Result<Vec<_>, SeccompError>>()?;
        let empty = Filter::default();
        if host.excludes(rule.excludes.as_ref().unwrap_or(&empty))?
            || !host.includes(rule.includes.as_ref().unwrap_or(&empty))?
        {
            continue;
        }
        let names = rule.names.clone().unwrap_or_default();
        if names.is_empty() {
            continue;
        }
        let mut syscall = LinuxSyscall::default();
        syscall
            .set_names(names)
            .set_action(action)
            .set_errno_ret(rule.errno_ret)
            .set_args((!args.is_empty()).then_some(args));
        syscalls.push(syscall);
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(parse_action(&profile.default_action)?)
        .set_default_errno_ret(profile.default_errno_ret)
        .set_architectures((!architectures.is_empty()).then_some(architectures))
        .set_syscalls(Some(syscalls));
    Ok(seccomp)
}

/// Reads the profile at `path` and converts it with [`from_containers_profile`].
pub fn load_containers_profile(
    path: &std::path::Path,
    granted_caps: &[&str],
    kernel: (u32, u32),
) -> Result<LinuxSeccomp, SeccompError> {
    let json = std::fs::read_to_string(path).map_err(|source| SeccompError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    from_containers_profile(&json, granted_caps, kernel)
}

/// The running kernel's `(major, minor)` version from `uname`; `(0, 0)` if it cannot be read,
/// which keeps no rule that needs a minimum kernel.
pub fn running_kernel() -> (u32, u32) {
    // SAFETY: utsname is plain old data; all-zero bytes are a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname that uname fills in.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (0, 0);
    }
    // SAFETY: uname NUL-terminates `release` within the array on success.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    parse_kernel(&release.to_string_lossy()).unwrap_or((0, 0))
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
