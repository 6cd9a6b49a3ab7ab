//! The jail's file system: a mount namespace whose root is an empty tmpfs with the writable
//! directories bind-mounted in at their own paths.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::JailError;

/// Flags of every mount in the jail: nothing there is a device, runs, or raises privileges.
const SAFE: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
/// Where the old root hangs until it is detached (inside the new root).
const OLD_ROOT: &str = ".old-root";

fn cstr(path: &Path) -> Result<CString, JailError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| JailError::BadArgument(format!("{} contains a NUL byte", path.display())))
}

fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), JailError> {
    let src = source.map(cstr).transpose()?;
    let tgt = cstr(target)?;
    let fs = fstype.map(|f| CString::new(f).expect("a literal without NUL"));
    let data = data.map(|d| CString::new(d).expect("a literal without NUL"));
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is a NUL-terminated string we own or null, as mount(2) allows.
    let rc = unsafe {
        libc::mount(
            ptr(&src),
            tgt.as_ptr(),
            ptr(&fs),
            flags,
            ptr(&data).cast::<libc::c_void>(),
        )
    };
    if rc != 0 {
        return Err(JailError::last_os(format!(
            "mount {} on {} (flags {flags:#x})",
            source.map_or_else(
                || fstype.unwrap_or("-").to_string(),
                |s| s.display().to_string()
            ),
            target.display()
        )));
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), JailError> {
    let c = cstr(path)?;
    // SAFETY: a NUL-terminated path we own.
    if unsafe { libc::mkdir(c.as_ptr(), 0o755) } != 0
        && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
    {
        return Err(JailError::last_os(format!("mkdir {}", path.display())));
    }
    Ok(())
}

/// `root` joined with the absolute `path`, creating each directory on the way.
fn mkdir_beneath(root: &Path, path: &Path) -> Result<PathBuf, JailError> {
    let mut at = root.to_path_buf();
    for part in path.components().skip(1) {
        at.push(part);
        mkdir(&at)?;
    }
    Ok(at)
}

/// The writable directories to bind: each once, none beneath another (a bind shows what lies
/// beneath it already).
fn outermost(writable: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = writable.to_vec();
    dirs.sort();
    dirs.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !kept.iter().any(|k| d.starts_with(k)) {
            kept.push(d);
        }
    }
    kept
}

/// Makes the calling thread's root an empty read-only tmpfs holding `writable` (absolute
/// directories) at their own paths, in a new mount namespace.
pub fn build_root(writable: &[PathBuf]) -> Result<(), JailError> {
    let dirs = outermost(writable);
    // SAFETY: unshare takes flags only; it affects the calling thread (the only one).
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(JailError::last_os("unshare(CLONE_NEWNS)"));
    }
    // Nothing done here may reach the host's namespace.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;

    // The new root needs a mount point; one beside the VMM's own files leaves nothing behind
    // (it is removed below), and with none, /tmp is covered (only in this namespace).
    let (root, leftover) = match dirs.first() {
        Some(d) => {
            let mp = d.join(format!(".colo-jail-{}", std::process::id()));
            let _ = std::fs::remove_dir(&mp);
            mkdir(&mp)?;
            let rel = mp.strip_prefix("/").unwrap_or(&mp).to_path_buf();
            (mp, Some(rel))
        }
        None => (PathBuf::from("/tmp"), None),
    };
    mount(
        Some(Path::new("colo-jail")),
        &root,
        Some("tmpfs"),
        SAFE,
        Some("mode=0755,size=64k"),
    )?;
    for d in &dirs {
        let at = mkdir_beneath(&root, d)?;
        mount(Some(d), &at, None, libc::MS_BIND, None)?;
        mount(
            None,
            &at,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | SAFE,
            None,
        )?;
    }
    let old = root.join(OLD_ROOT);
    mkdir(&old)?;
    let (root_c, old_c) = (cstr(&root)?, cstr(&old)?);
    // SAFETY: two NUL-terminated paths we own.
    if unsafe { libc::syscall(libc::SYS_pivot_root, root_c.as_ptr(), old_c.as_ptr()) } != 0 {
        return Err(JailError::last_os(format!("pivot_root {}", root.display())));
    }
    std::env::set_current_dir("/").map_err(|source| JailError::Step {
        step: "chdir /".into(),
        source,
    })?;
    let old_in = cstr(&Path::new("/").join(OLD_ROOT))?;
    // SAFETY: a NUL-terminated path we own.
    if unsafe { libc::umount2(old_in.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(JailError::last_os("detach the old root"));
    }
    // SAFETY: a NUL-terminated path we own.
    unsafe { libc::rmdir(old_in.as_ptr()) };
    if let Some(rel) = leftover {
        // The mount point as the host sees it: an empty directory, visible through the bind.
        let _ = std::fs::remove_dir(Path::new("/").join(rel));
    }
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | SAFE,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_repeated_directories_are_bound_once() {
        let dirs = [
            PathBuf::from("/var/lib/colo/jobs/a/sandbox"),
            PathBuf::from("/var/lib/colo/jobs/a"),
            PathBuf::from("/run/x"),
            PathBuf::from("/var/lib/colo/jobs/a"),
            PathBuf::from("/var/lib/colo/jobs/ab"),
        ];
        assert_eq!(
            outermost(&dirs),
            vec![
                PathBuf::from("/run/x"),
                PathBuf::from("/var/lib/colo/jobs/a"),
                PathBuf::from("/var/lib/colo/jobs/ab"),
            ]
        );
    }
}
