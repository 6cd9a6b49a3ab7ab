//! Kernel modules the guest image lists for its kernel (`/etc/colo/modules`: one path of a `.ko`
//! file per line, in load order). A kernel with the drivers built in (colo's own) needs no
//! list; a distribution kernel (Debian's cloud kernel) has virtio-mmio, virtio-console, ext4
//! and overlay as modules.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;

/// The list of modules in the initramfs.
pub const LIST: &str = "/etc/colo/modules";
/// The largest list read.
const MAX_LIST: u64 = 64 * 1024;

/// Errors of loading modules.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// The list could not be read.
    #[error("cannot read the module list {LIST}: {0}")]
    List(io::Error),
    /// A module could not be opened or loaded.
    #[error("cannot load kernel module {path}: {source}")]
    Load {
        /// The module file.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

/// Loads the listed modules; returns how many were loaded (0 without a list). A module the
/// kernel has already is not an error.
pub fn load_listed() -> Result<usize, KmodError> {
    let mut text = String::new();
    match File::open(LIST) {
        Ok(f) => f
            .take(MAX_LIST)
            .read_to_string(&mut text)
            .map_err(KmodError::List)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(KmodError::List(e)),
    };
    let mut loaded = 0;
    for path in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let load_err = |source| KmodError::Load {
            path: path.into(),
            source,
        };
        let f = File::open(path).map_err(load_err)?;
        let params: &CStr = c"";
        // SAFETY: finit_module reads the module from the open descriptor and the parameters
        // from a NUL-terminated string that outlives the call.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(load_err(e));
            }
        }
        loaded += 1;
    }
    Ok(loaded)
}
