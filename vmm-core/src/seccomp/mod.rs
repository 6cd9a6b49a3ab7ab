//! Per-thread seccomp-bpf filters: the main (control) thread, each vCPU thread and the IO
//! thread and the channel thread allow only the system calls they make, and a call outside the list kills the whole
//! VMM (`SECCOMP_RET_KILL_PROCESS`, seen as SIGSYS). The lists are data,
//! `vmm-core/seccomp/x86_64.json` (seccompiler's JSON format), compiled when the VMM starts.
//!
//! Each thread installs its own filter before it does anything a guest controls: a vCPU thread
//! before its first `KVM_RUN`, the IO thread before it looks at a queue, the main thread right
//! after starting the others (a filter is inherited by threads started later, so the main
//! thread's comes last). Nothing in the shipped binary turns them off.

use seccompiler::{BpfProgram, TargetArch};

/// The filter lists, as committed.
pub const FILTERS_JSON: &str = include_str!("../../seccomp/x86_64.json");

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread: control socket, signals, teardown.
    Main,
    /// A vCPU thread.
    Vcpu,
    /// The `colo-io` thread (virtio-blk queues).
    Io,
    /// The `colo-chan` thread (the virtio-console queues and the `--channel` socket).
    Channel,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Main, Self::Vcpu, Self::Io, Self::Channel];

    /// Its name in the JSON file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Vcpu => "vcpu",
            Self::Io => "io",
            Self::Channel => "channel",
        }
    }
}

/// Why filters could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The JSON lists do not compile.
    #[error("the seccomp filter lists do not compile: {0}")]
    Compile(#[from] seccompiler::Error),
    /// A thread kind has no list.
    #[error("the seccomp filter lists have no `{0}` filter")]
    Missing(&'static str),
    /// The kernel refused a filter.
    #[error(
        "cannot install the {thread} thread's seccomp filter: {source} (the kernel needs CONFIG_SECCOMP_FILTER)"
    )]
    Install {
        /// Which thread.
        thread: &'static str,
        /// What seccompiler said.
        source: seccompiler::Error,
    },
}

/// The compiled filters, one per thread kind.
#[derive(Debug, Clone)]
pub struct Filters {
    main: BpfProgram,
    vcpu: BpfProgram,
    io: BpfProgram,
    channel: BpfProgram,
}

impl Filters {
    /// Compiles [`FILTERS_JSON`].
    pub fn compile() -> Result<Self, SeccompError> {
        let mut map = seccompiler::compile_from_json(FILTERS_JSON.as_bytes(), TargetArch::x86_64)?;
        let mut take = |k: ThreadKind| map.remove(k.name()).ok_or(SeccompError::Missing(k.name()));
        Ok(Self {
            main: take(ThreadKind::Main)?,
            vcpu: take(ThreadKind::Vcpu)?,
            io: take(ThreadKind::Io)?,
            channel: take(ThreadKind::Channel)?,
        })
    }

    /// The filter of `kind`.
    pub fn get(&self, kind: ThreadKind) -> &BpfProgram {
        match kind {
            ThreadKind::Main => &self.main,
            ThreadKind::Vcpu => &self.vcpu,
            ThreadKind::Io => &self.io,
            ThreadKind::Channel => &self.channel,
        }
    }
}

/// Installs `filter` (of `kind`) on the calling thread; sets `no_new_privs` first.
pub fn install(kind: ThreadKind, filter: &BpfProgram) -> Result<(), SeccompError> {
    seccompiler::apply_filter(filter).map_err(|source| SeccompError::Install {
        thread: kind.name(),
        source,
    })
}

#[cfg(test)]
mod tests;
