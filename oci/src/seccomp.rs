//! (being written: the containers-common profile conversion lands with its tests)

use oci_spec::runtime::LinuxSeccomp;

/// Errors converting a profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Not converted yet.
    #[error("the seccomp profile conversion is not built yet")]
    NotBuilt,
}

/// Converts a containers-common profile.
pub fn from_containers_profile(
    _json: &str,
    _granted_caps: &[&str],
    _kernel: (u32, u32),
) -> Result<LinuxSeccomp, SeccompError> {
    Err(SeccompError::NotBuilt)
}

/// The running kernel's version.
pub fn running_kernel() -> (u32, u32) {
    (0, 0)
}
