//! The guest's file systems: the kernel's own (`/proc`, `/sys`, `/dev`) at boot, and the job's
//! root when the job names one — its read-only block device under an overlay whose upper layer
//! is a tmpfs, so the job may write and the disk image stays untouched (and shareable) — with
//! the job's volumes mounted read-only in it.
//!
//! Entering the root moves it over `/` and `chroot`s into it, as `switch_root` does: an
//! initramfs cannot be `pivot_root`ed away. The init's own code stays mapped from the
//! initramfs, and the channel's descriptor stays open across the move.

use std::fs;
use std::io;

use colo_guest_agent::RootDisk;
use nix::mount::{MsFlags, mount};

/// Where the job's root is assembled, on the initramfs.
const STAGING: &str = "/colo";

/// Errors of mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A mount failed.
    #[error("cannot mount {what} on {target}: {source}")]
    Mount {
        /// What was mounted (a device or a file system type).
        what: String,
        /// The mount point.
        target: String,
        /// The cause.
        source: nix::Error,
    },
    /// A directory could not be made or entered.
    #[error("cannot {op} {path}: {source}")]
    Dir {
        /// The operation.
        op: &'static str,
        /// The directory.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

fn mkdir(path: &str) -> Result<(), MountError> {
    fs::create_dir_all(path).map_err(|source| MountError::Dir {
        op: "create",
        path: path.into(),
        source,
    })
}

fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), MountError> {
    mkdir(target)?;
    mount(Some(source), target, Some(fstype), flags, data).map_err(|e| MountError::Mount {
        what: if source == fstype {
            fstype.into()
        } else {
            format!("{source} ({fstype})")
        },
        target: target.into(),
        source: e,
    })
}

/// `/proc`, `/sys` and `/dev` under `root` (`""` for the current root). A `/dev` the kernel
/// mounted already (`CONFIG_DEVTMPFS_MOUNT`) is kept.
pub fn mount_kernel_filesystems(root: &str) -> Result<(), MountError> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", &format!("{root}/proc"), "proc", nosuid, None)?;
    mount_fs("sysfs", &format!("{root}/sys"), "sysfs", nosuid, None)?;
    match mount_fs(
        "devtmpfs",
        &format!("{root}/dev"),
        "devtmpfs",
        MsFlags::MS_NOSUID,
        None,
    ) {
        Err(MountError::Mount {
            source: nix::Error::EBUSY,
            ..
        }) => {}
        r => r?,
    }
    Ok(())
}

/// Mounts the job's root (read-only device, overlay on a tmpfs) and makes it `/`.
pub fn enter_root(root: &RootDisk) -> Result<(), MountError> {
    let lower = format!("{STAGING}/lower");
    let rw = format!("{STAGING}/rw");
    let new_root = format!("{STAGING}/root");
    mount_fs(&root.device, &lower, &root.fstype, MsFlags::MS_RDONLY, None)?;
    mount_fs("tmpfs", &rw, "tmpfs", MsFlags::MS_NOSUID, Some("mode=0755"))?;
    mkdir(&format!("{rw}/upper"))?;
    mkdir(&format!("{rw}/work"))?;
    let opts = format!("lowerdir={lower},upperdir={rw}/upper,workdir={rw}/work");
    mount_fs(
        "overlay",
        &new_root,
        "overlay",
        MsFlags::empty(),
        Some(&opts),
    )?;
    // The job's read-only volumes, at their targets (made in the overlay when missing).
    for v in &root.volumes {
        mount_fs(
            &v.device,
            &format!("{new_root}{}", v.target.trim_end_matches('/')),
            &v.fstype,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None,
        )?;
    }
    mount_kernel_filesystems(&new_root)?;
    let dir_err = |op, source| MountError::Dir {
        op,
        path: new_root.clone(),
        source,
    };
    std::env::set_current_dir(&new_root).map_err(|e| dir_err("enter", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| {
        MountError::Mount {
            what: new_root.clone(),
            target: "/".into(),
            source: e,
        }
    })?;
    std::os::unix::fs::chroot(".").map_err(|e| dir_err("chroot into", e))?;
    std::env::set_current_dir("/").map_err(|e| dir_err("enter", e))?;
    Ok(())
}
