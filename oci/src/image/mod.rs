//! Root filesystems for containers: a directory used in place, or an image unpacked once into a
//! content-addressed store.
//!
//! | image | becomes |
//! |---|---|
//! | a plain directory (no `oci-layout` file) | itself, read-only and unmodified ([`RootFs::digest`] is `None`) |
//! | an OCI image layout directory or tarball | `STORE/sha256/<manifest digest>/rootfs` |
//! | a `docker save` tarball (`manifest.json`) | `STORE/sha256/<config digest>/rootfs` |
//!
//! Invariants of the store ([`ImageStore`]): every blob whose digest the format gives is verified;
//! no layer entry writes outside the rootfs being built (the `unpack` module says how); an image
//! appears under `sha256/` whole or not at all (it is built under `tmp/` and renamed); the unpacked
//! images together stay under the store's byte cap, least-recently-used unused images giving way.

mod defaults;
mod layout;
mod source;
mod store;
mod unpack;

use std::io;
use std::path::{Component, Path, PathBuf};

pub use defaults::ImageDefaults;
pub use store::{GcReport, ImageStore};

/// A container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFs {
    /// The directory to use as the bundle's `root.path`.
    pub path: PathBuf,
    /// `sha256:<hex>` of the unpacked image in the store (what [`ImageStore::gc`] takes to keep
    /// it), or `None` for a directory image used in place.
    pub digest: Option<String>,
    /// What the image's configuration says its container runs by default (none for a
    /// directory image).
    pub defaults: ImageDefaults,
}

/// Why an image could not become a root filesystem. Each names the image, the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image path does not exist.
    #[error("image {image}: does not exist; fix the job's image path")]
    NotFound {
        /// The job's image path.
        image: PathBuf,
    },
    /// The image is none of the known kinds.
    #[error(
        "image {image}: {detail}; an image is a root directory, an OCI image layout (a directory \
         or tarball with oci-layout, index.json and blobs/sha256/) or a `docker save` tarball"
    )]
    Unrecognized {
        /// The job's image path.
        image: PathBuf,
        /// What it is instead.
        detail: String,
    },
    /// The image's index, manifest or config is malformed or names a missing blob.
    #[error("image {image}: {detail}; rebuild or save the image again")]
    BadManifest {
        /// The job's image path.
        image: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A blob's content does not match the digest the image names for it.
    #[error(
        "image {image}: {blob} has sha256:{actual}, not the {expected} the image names; the image \
         is corrupt, copy or save it again"
    )]
    DigestMismatch {
        /// The job's image path.
        image: PathBuf,
        /// The blob's name inside the image.
        blob: String,
        /// The digest the image names.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// The unpacked image would not fit in the store.
    #[error(
        "image {image}: unpacked it needs more than {bytes} bytes, but the image store holds at \
         most {cap} bytes (offline.container.image_store) and {in_use} of them belong to \
         images in use; raise offline.container.image_store or use a smaller image"
    )]
    TooLarge {
        /// The job's image path.
        image: PathBuf,
        /// The bytes unpacked when the image was refused.
        bytes: u64,
        /// The store's cap.
        cap: u64,
        /// Bytes held by other images that could not be removed.
        in_use: u64,
    },
    /// A layer entry would write outside the root filesystem.
    #[error(
        "image {image}: layer entry {entry:?} {why}; the image is unsafe, rebuild it without that \
         entry"
    )]
    UnsafeEntry {
        /// The job's image path.
        image: PathBuf,
        /// The entry's path in its layer.
        entry: String,
        /// How it would escape.
        why: String,
    },
    /// A directory image lacks a directory the container mounts over.
    #[error(
        "directory image {rootfs}: {dir} {why}; create it as a directory in the image (a directory \
         image is used in place, read-only, so colo does not create it)"
    )]
    MissingMountPoint {
        /// The directory image.
        rootfs: PathBuf,
        /// The mount point, absolute inside the container.
        dir: String,
        /// What is there instead.
        why: &'static str,
    },
    /// A file system operation failed.
    #[error("{path}: {source}; check the path's permissions and the free space")]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Wraps an [`io::Error`] with the path it concerns.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directories every container mounts over.
pub const CONTAINER_MOUNT_POINTS: [&str; 4] = ["/proc", "/dev", "/sys", "/tmp"];

/// Checks that a directory image has a directory at each of [`CONTAINER_MOUNT_POINTS`] and at
/// each of `targets` (the job's volume targets, absolute paths inside the container); reports the
/// first one missing or not a plain directory.
pub fn check_mount_points(rootfs: &Path, targets: &[&str]) -> Result<(), ImageError> {
    for dir in CONTAINER_MOUNT_POINTS.iter().chain(targets) {
        let missing = |why| ImageError::MissingMountPoint {
            rootfs: rootfs.to_path_buf(),
            dir: (*dir).to_owned(),
            why,
        };
        let mut path = rootfs.to_path_buf();
        for component in Path::new(dir).components() {
            match component {
                Component::Normal(name) => path.push(name),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(missing("is not a plain absolute path"));
                }
            }
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(missing("passes through a symbolic link"));
                }
                Ok(meta) if !meta.is_dir() => return Err(missing("is not a directory")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(missing("does not exist"));
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_must_be_plain_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["proc", "dev", "sys", "tmp", "data/in"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        check_mount_points(root, &["/data/in"]).expect("all present");

        let err = check_mount_points(root, &["/data/out"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/data/out") && text.contains("does not exist"),
            "{text}"
        );
        assert!(text.contains(&root.display().to_string()), "{text}");

        std::fs::write(root.join("file"), b"x").expect("write");
        let err = check_mount_points(root, &["/file"]).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");

        std::os::unix::fs::symlink("/etc", root.join("link")).expect("symlink");
        let err = check_mount_points(root, &["/link"]).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        std::fs::remove_dir(root.join("sys")).expect("rmdir");
        let err = check_mount_points(root, &[]).unwrap_err();
        assert!(err.to_string().contains("/sys does not exist"), "{err}");
    }
}
