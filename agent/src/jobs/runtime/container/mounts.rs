//! A container's volumes (and an image directory used in place) bind-mounted from the
//! descriptors the agent resolved beneath the operator's roots onto `<state>/mounts/<job>/`, a
//! directory no client can write; the runtime, which mounts by path, mounts those. The client's
//! own path is never handed on: beneath a root a job can write (a read-write volume), a
//! directory could be swapped for a symlink between the agent's check and the runtime's mount.
//!
//! Removed by unmounting and `rmdir` only, never recursively: a mount that is still there
//! (one an unmount missed, or another mount namespace's) can never take a volume's files with it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Errors of staging a mount.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be made.
    #[error("cannot make the mount point {path}: {source}")]
    MountPoint {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The bind mount failed.
    #[error(
        "cannot bind-mount the resolved directory onto {path}: {source} (the agent needs CAP_SYS_ADMIN)"
    )]
    Bind {
        /// The mount point.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The mount point shows something else than the descriptor.
    #[error("{0} does not show the resolved directory after the bind mount")]
    Mismatch(PathBuf),
}

/// Bind-mounts the directory `pinned` names (an `O_PATH` descriptor) onto `at`, made empty.
pub fn stage(pinned: &OwnedFd, at: &Path) -> Result<(), MountError> {
    let point = |source| MountError::MountPoint {
        path: at.to_path_buf(),
        source,
    };
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(point)?;
    }
    match std::fs::create_dir(at) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(point(e)),
    }
    // The magic link names the descriptor's inode itself: no path is resolved again.
    let source = PathBuf::from(format!("/proc/self/fd/{}", pinned.as_raw_fd()));
    nix::mount::mount(
        Some(&source),
        at,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| MountError::Bind {
        path: at.to_path_buf(),
        source: io::Error::from(e),
    })?;
    let want = std::fs::metadata(&source).map_err(point)?;
    let got = std::fs::metadata(at).map_err(point)?;
    if (want.dev(), want.ino()) != (got.dev(), got.ino()) {
        let _ = nix::mount::umount2(at, MntFlags::MNT_DETACH);
        return Err(MountError::Mismatch(at.to_path_buf()));
    }
    Ok(())
}

/// Unmounts every mount point in `dir` and removes them and `dir` (`rmdir` only). Missing is
/// fine; the first failure is returned after trying everything.
pub fn unstage(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut first = None;
    for e in entries.flatten() {
        let p = e.path();
        // EINVAL: not a mount point (already unmounted, or never mounted).
        match nix::mount::umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(err) => {
                first.get_or_insert(io::Error::from(err));
            }
        }
        if let Err(err) = std::fs::remove_dir(&p)
            && err.kind() != io::ErrorKind::NotFound
        {
            first.get_or_insert(err);
        }
    }
    if let Err(err) = std::fs::remove_dir(dir)
        && err.kind() != io::ErrorKind::NotFound
    {
        first.get_or_insert(err);
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    fn o_path(p: &Path) -> OwnedFd {
        OwnedFd::from(
            File::options()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(p)
                .unwrap(),
        )
    }

    /// The staged mount shows the directory that was checked even when its path is swapped for
    /// a symlink afterwards; unstaging removes only mount points, never what they showed.
    #[test]
    fn a_staged_mount_keeps_the_checked_directory_after_a_symlink_swap() {
        if !colo_testkit::root_or_skip("staged mounts") {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("data"), "mine").unwrap();
        let secret = d.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("data"), "not yours").unwrap();
        let pinned = o_path(&vol);
        // The swap a hostile job could make between the check and the mount.
        std::fs::rename(&vol, d.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&secret, &vol).unwrap();
        let staging = d.path().join("mounts").join("j1");
        let at = staging.join("v0");
        stage(&pinned, &at).unwrap();
        assert_eq!(std::fs::read_to_string(at.join("data")).unwrap(), "mine");
        unstage(&staging).unwrap();
        assert!(!staging.exists());
        assert_eq!(
            std::fs::read_to_string(d.path().join("moved").join("data")).unwrap(),
            "mine",
            "unstaging removed the volume's files"
        );
        unstage(&staging).unwrap();
    }

    #[test]
    fn unstage_leaves_a_directory_with_files_alone() {
        let d = tempfile::tempdir().unwrap();
        let staging = d.path().join("j1");
        std::fs::create_dir_all(staging.join("v0")).unwrap();
        std::fs::write(staging.join("v0").join("keep"), "x").unwrap();
        assert!(
            unstage(&staging).is_err(),
            "rmdir of a full directory fails"
        );
        assert!(staging.join("v0").join("keep").exists());
    }
}
