//! A Linux guest's root filesystem: the job's image as a read-only ext4 block image.
//!
//! The image is what a container takes (a root directory, an OCI image layout or a `docker save`
//! tarball, beneath the operator's image roots), or an ext4 file system image used as it is.
//! Layouts and tarballs are unpacked once into a store of their own and made into a block image
//! with `mkfs.ext4 -d` (no mount: the host never mounts a file system a guest can write), kept by
//! digest and reused; a directory is made into a block image per job. The host never mounts
//! either.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use colo_oci::image::{ImageDefaults, ImageStore, RootFs};

use crate::jobs::paths::Resolved;

/// The ext4 (and ext2/3) superblock magic, at byte 1080 of the image.
const EXT4_MAGIC: [u8; 2] = [0x53, 0xef];
const MAGIC_OFFSET: u64 = 1080;

/// The block images made from job images, and the store their unpacked trees live in.
#[derive(Debug)]
pub struct BlockImages {
    blocks: PathBuf,
    cap_bytes: u64,
    unpacked: ImageStore,
}

/// A job's root, ready to attach.
#[derive(Debug)]
pub struct GuestRoot {
    /// The ext4 image (read-only for the guest).
    pub block: PathBuf,
    /// `sha256:<hex>` of a stored image, which must not be removed while the job lives.
    pub digest: Option<String>,
    /// The image configuration's defaults (none for a directory or an ext4 image).
    pub defaults: ImageDefaults,
    /// A directory holding the same tree, to find the command on `PATH` (none for an ext4
    /// image: its command must be an absolute path).
    pub tree: Option<PathBuf>,
}

/// Whether `path` holds an ext2/3/4 file system.
pub fn is_ext4(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut magic, MAGIC_OFFSET))
        .is_ok_and(|()| magic == EXT4_MAGIC)
}

/// The checked directory as a child process (mkfs.ext4) reaches it: through the agent's
/// descriptor, never the path a client could swap after the check (`/.` makes every tool
/// resolve the link to the directory itself).
pub fn pinned_dir(dir: &Resolved) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}/.",
        std::process::id(),
        dir.pinned.as_raw_fd()
    ))
}

/// Bytes and entries beneath `dir`, not following symlinks.
fn tree_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                bytes += m.len();
            }
        }
    }
    Ok((bytes, entries))
}

/// Makes `out` an ext4 image holding the tree `dir` (owned as it is there), sized for it with
/// room to spare. The image is written beside `out` and renamed into place.
pub fn make_ext4(dir: &Path, out: &Path) -> Result<(), String> {
    let (bytes, entries) =
        tree_size(dir).map_err(|e| format!("cannot measure {}: {e}", dir.display()))?;
    // Data, a block per entry for inodes and directories, a quarter more, and 32 MiB for the
    // file system's own tables.
    let kib = ((bytes + entries * 4096) * 5 / 4 + (32 << 20)).div_ceil(1024);
    let tmp = out.with_extension("ext4.tmp");
    let _ = std::fs::remove_file(&tmp);
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "colo-root", "-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(&tmp)
        .arg(format!("{kib}k"))
        .output()
        .map_err(|e| {
            format!("cannot run mkfs.ext4 ({e}): install e2fsprogs to run Linux-guest jobs")
        })?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "mkfs.ext4 -d {} failed ({}): {}",
            dir.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    std::fs::rename(&tmp, out).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))
}

impl BlockImages {
    /// Opens (creating) the cache in `dir`, holding at most `cap_bytes`: half for unpacked
    /// trees, half for block images.
    pub fn open(dir: &Path, cap_bytes: u64) -> Result<Self, String> {
        let blocks = dir.join("blocks");
        std::fs::create_dir_all(&blocks)
            .map_err(|e| format!("cannot create {}: {e}", blocks.display()))?;
        let unpacked = ImageStore::open(&dir.join("unpacked"), cap_bytes / 2)
            .map_err(|e| format!("the image store {}: {e}", dir.display()))?;
        Ok(Self {
            blocks,
            cap_bytes: cap_bytes / 2,
            unpacked,
        })
    }

    /// The root of a job whose image was checked as `image`; a per-job block image goes to
    /// `job_block`. `in_use` lists the digests of live jobs' images.
    pub fn root_for(
        &self,
        image: &Resolved,
        job_block: &Path,
        in_use: &[&str],
    ) -> Result<GuestRoot, String> {
        // What was checked, not the path, which a client could swap after the check.
        let pinned = PathBuf::from(format!("/proc/self/fd/{}", image.pinned.as_raw_fd()));
        if !image.is_dir && is_ext4(&pinned) {
            return Ok(GuestRoot {
                block: pinned,
                digest: None,
                defaults: ImageDefaults::default(),
                tree: None,
            });
        }
        let pinned_dir = pinned_dir(image);
        let source = if image.is_dir {
            &pinned_dir
        } else {
            &image.path
        };
        let RootFs {
            path,
            digest,
            defaults,
        } = self
            .unpacked
            .resolve(source, in_use)
            .map_err(|e| e.to_string())?;
        let block = match &digest {
            None => {
                make_ext4(&path, job_block)?;
                job_block.to_path_buf()
            }
            Some(d) => {
                let hex = d.trim_start_matches("sha256:");
                let block = self.blocks.join(format!("{hex}.ext4"));
                if block.is_file() {
                    // Most recently used: the last removed.
                    let _ =
                        std::fs::File::open(&block).and_then(|f| f.set_modified(SystemTime::now()));
                } else {
                    make_ext4(&path, &block)?;
                    self.gc(in_use, &block);
                }
                block
            }
        };
        Ok(GuestRoot {
            block,
            digest,
            defaults,
            tree: Some(path),
        })
    }

    /// Removes the least recently used block images beyond the cap, never `keep` nor one in
    /// `in_use`.
    fn gc(&self, in_use: &[&str], keep: &Path) {
        let mut all: Vec<(SystemTime, u64, PathBuf)> = std::fs::read_dir(&self.blocks)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = all.iter().map(|(_, len, _)| len).sum();
        all.sort();
        for (_, len, path) in all {
            if total <= self.cap_bytes {
                break;
            }
            let hex = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let used = in_use
                .iter()
                .any(|d| d.trim_start_matches("sha256:") == hex);
            if path == keep || used {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                tracing::info!(image = %path.display(), bytes = len, "removed an unused guest block image");
            }
        }
    }
}

/// Finds `name` on `path_var` (colon-separated) inside `tree`, as the guest will see it; `name`
/// itself when it is absolute.
pub fn find_command(name: &str, path_var: &str, tree: Option<&Path>) -> Result<String, String> {
    if name.starts_with('/') {
        return Ok(name.to_string());
    }
    let Some(tree) = tree else {
        return Err(format!(
            "the command {name:?} is not an absolute path, and an ext4 image cannot be searched \
             for it on the host; give its absolute path"
        ));
    };
    path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
        .find(|p| {
            std::fs::symlink_metadata(tree.join(p.trim_start_matches('/')))
                .is_ok_and(|m| !m.is_dir())
        })
        .ok_or_else(|| {
            format!("the command {name:?} is not on PATH {path_var:?} in the image; give its path")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_becomes_an_ext4_image_and_commands_are_found_in_it() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
        std::fs::write(tree.join("usr/bin/sort"), b"#!/bin/sh\n").unwrap();
        let out = d.path().join("root.ext4");
        make_ext4(&tree, &out).unwrap();
        assert!(is_ext4(&out));
        assert!(!is_ext4(&tree.join("usr/bin/sort")));
        assert_eq!(
            find_command("sort", "/bin:/usr/bin", Some(&tree)).unwrap(),
            "/usr/bin/sort"
        );
        assert_eq!(find_command("/x", "", None).unwrap(), "/x");
        let e = find_command("nope", "/bin:/usr/bin", Some(&tree)).unwrap_err();
        assert!(e.contains("not on PATH"), "{e}");
        let e = find_command("sort", "/bin", None).unwrap_err();
        assert!(e.contains("absolute path"), "{e}");
    }
}
