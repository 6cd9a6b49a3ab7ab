//! Why a VM could not start ([`StartError`]), and which exit status that is.

use std::path::PathBuf;

use super::boot::BootError;
use super::control_server::ControlSocketError;
use super::devices::virtio::block::DiskError;
use super::devices::virtio::console::ChannelError;
use super::vstate::memory::MemoryError;
use crate::exit::{EXIT_BAD_INPUT, EXIT_VMM_ERROR};

/// Why a VM could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bad argument.
    #[error("{0}")]
    BadArgument(String),
    /// The kernel, initrd or command line is unusable.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The control socket is taken or cannot be made.
    #[error(transparent)]
    ControlSocket(#[from] ControlSocketError),
    /// A file named on the command line cannot be opened.
    #[error("{what} {path}: {source}")]
    File {
        /// Which option.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `/dev/kvm` cannot be used.
    #[error(
        "cannot open /dev/kvm: {0}; colo-vmm needs KVM (load kvm, run as a user allowed to use /dev/kvm)"
    )]
    NoKvm(kvm_ioctls::Error),
    /// A KVM call failed.
    #[error("{what} failed: {source}")]
    Kvm {
        /// The ioctl or step.
        what: String,
        /// What KVM said.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A disk cannot be used.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The `--channel` socket is taken or cannot be made.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The jail could not be built.
    #[error("jail: {0}")]
    Jail(#[from] crate::jail::JailError),
    /// The seccomp filters could not be built or installed.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A host resource (thread, eventfd, signal) could not be set up.
    #[error("{what}: {source}")]
    Host {
        /// What was being set up.
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl StartError {
    /// The exit status for this error: [`EXIT_BAD_INPUT`] for the user's mistakes,
    /// [`EXIT_VMM_ERROR`] for host failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadArgument(_)
            | Self::Boot(_)
            | Self::ControlSocket(_)
            | Self::File { .. }
            | Self::Disk(_)
            | Self::Channel(_)
            | Self::NoKvm(_) => EXIT_BAD_INPUT,
            Self::Memory(MemoryError::Prefault { .. }) => EXIT_BAD_INPUT,
            Self::Jail(crate::jail::JailError::BadArgument(_)) => EXIT_BAD_INPUT,
            Self::Kvm { .. }
            | Self::Memory(_)
            | Self::Jail(_)
            | Self::Seccomp(_)
            | Self::Host { .. } => EXIT_VMM_ERROR,
        }
    }
}

/// Maps a failed KVM call to [`StartError::Kvm`] naming it.
pub(super) fn kvm_err(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Kvm { what, source }
}

/// Maps a failed host call to [`StartError::Host`] naming what was being set up.
pub(super) fn host_err(what: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Host { what, source }
}
