//! Kernel modules the guest image lists for its kernel (`/etc/colo/modules`: one path of a `.ko`
//! file per line, in load order). A kernel with the drivers built in (colo's own) needs no
//! list; a distribution kernel (Debian's cloud kernel) has virtio-mmio, virtio-console, ext4
//! and overlay as modules.
//!
//! As `modprobe` does, a module gets the `<module>.<param>=<value>` words of the kernel command
//! line as its parameters: QEMU's microvm machine names its virtio-mmio devices there
//! (`virtio_mmio.device=...`) when ACPI is off.

use std::ffi::CString;
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

/// The parameters the kernel command line gives the module in `path` (named by its file name
/// without `.ko`, `-` read as `_`), space-separated, as a C string.
fn params_for(path: &str, cmdline: &str) -> CString {
    let file = path.rsplit('/').next().unwrap_or(path);
    let name = file.strip_suffix(".ko").unwrap_or(file).replace('-', "_");
    let prefix = format!("{name}.");
    let words: Vec<&str> = cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(&prefix))
        .filter(|p| !p.contains('\0'))
        .collect();
    CString::new(words.join(" ")).unwrap_or_default()
}

/// Loads the listed modules with their command-line parameters; returns how many were loaded
/// (0 without a list). A module the kernel has already is not an error.
pub fn load_listed(cmdline: &str) -> Result<usize, KmodError> {
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
        let params = params_for(path, cmdline);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_gets_its_own_command_line_parameters() {
        let cmdline = "console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 \
                       virtio_mmio.device=512@0xfeb00c00:11 virtio_console.x=1 quiet";
        let p = params_for("/lib/modules/virtio_mmio.ko", cmdline);
        assert_eq!(
            p.to_str().unwrap(),
            "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11"
        );
        assert_eq!(
            params_for("virtio-console.ko", cmdline).to_str().unwrap(),
            "x=1"
        );
        assert_eq!(params_for("/m/ext4.ko", cmdline).to_str().unwrap(), "");
    }
}
