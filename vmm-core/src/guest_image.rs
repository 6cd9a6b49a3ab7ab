//! Where colo's workload guest ELF is.
//!
//! The crate's build assembles the guest (`vmm-core/guest/workload/`) into its build directory and
//! embeds the same bytes in the library, so the guest is always available: `colo-vmm guest-path`
//! prints the path [`workload_guest_path`] finds.

use std::path::PathBuf;

/// Path of the workload guest ELF as built by this crate's build script (inside `target/`).
pub const WORKLOAD_GUEST_PATH: &str = env!("COLO_WORKLOAD_GUEST_BUILT");

/// The workload guest ELF itself (a few tens of KiB).
pub const WORKLOAD_GUEST_ELF: &[u8] = include_bytes!(env!("COLO_WORKLOAD_GUEST_BUILT"));

/// Environment variable that overrides where the workload guest is.
pub const WORKLOAD_GUEST_ENV: &str = "COLO_WORKLOAD_GUEST";

/// Errors finding the workload guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestImageError {
    /// `$COLO_WORKLOAD_GUEST` names a file that does not exist.
    #[error("{WORKLOAD_GUEST_ENV}={0} does not exist; unset it or point it at the guest ELF")]
    EnvMissing(PathBuf),
    /// The embedded copy could not be written out.
    #[error("cannot write the workload guest to {path}: {source}; set {WORKLOAD_GUEST_ENV}")]
    Write {
        /// Where it was written.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Finds the workload guest: `$COLO_WORKLOAD_GUEST`, else the build's copy when it still holds
/// the embedded bytes, else the embedded bytes written once to
/// `$TMPDIR/colo-workload-guest-<hash>.elf`.
pub fn workload_guest_path() -> Result<PathBuf, GuestImageError> {
    if let Some(p) = std::env::var_os(WORKLOAD_GUEST_ENV) {
        let p = PathBuf::from(p);
        return if p.exists() {
            Ok(p)
        } else {
            Err(GuestImageError::EnvMissing(p))
        };
    }
    let built = PathBuf::from(WORKLOAD_GUEST_PATH);
    if std::fs::read(&built).is_ok_and(|b| b == WORKLOAD_GUEST_ELF) {
        return Ok(built);
    }
    let path = std::env::temp_dir().join(format!(
        "colo-workload-guest-{:016x}.elf",
        fnv1a(WORKLOAD_GUEST_ELF)
    ));
    if std::fs::read(&path).is_ok_and(|b| b == WORKLOAD_GUEST_ELF) {
        return Ok(path);
    }
    let write = |source| GuestImageError::Write {
        path: path.clone(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, WORKLOAD_GUEST_ELF).map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(write)?;
    Ok(path)
}

/// 64-bit FNV-1a, to name the written-out copy by its content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_guest_is_an_elf_with_a_pvh_note() {
        assert_eq!(&WORKLOAD_GUEST_ELF[..4], b"\x7fELF");
        let found = workload_guest_path().unwrap();
        assert_eq!(std::fs::read(found).unwrap(), WORKLOAD_GUEST_ELF);
        assert!(WORKLOAD_GUEST_ELF.windows(4).any(|w| w == b"Xen\0"));
        assert!(WORKLOAD_GUEST_ELF.windows(5).any(|w| w == b"COLO\0"));
    }
}
