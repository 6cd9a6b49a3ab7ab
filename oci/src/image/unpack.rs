//! Applying layers to a root filesystem being built, safely.
//!
//! `tar`'s `Entry::unpack_in` skips `..` entries, strips a leading `/` and checks that an entry's
//! parent, canonicalized on the host, lies inside the destination. That last check follows
//! symbolic links as the host sees them, so an image's absolute link (`lib -> /usr/lib`, common
//! in merged-/usr images) would be judged by the host's `/usr/lib`. This module instead resolves
//! every parent path inside the rootfs the way the container will see it: links are followed
//! with the rootfs as `/`, `..` stops at the rootfs's top, and the resolved parent is a chain of
//! real directories under the rootfs. Then only the final component is written, never followed
//! (an existing link there is removed first). An entry that climbs out with `..` is refused; an
//! absolute entry path is taken relative to the rootfs, as Docker does. Hard links must point at
//! a regular file inside. Device nodes and fifos are skipped (a container gets its `/dev` from
//! the runtime). Whiteouts (`.wh.NAME`, `.wh..wh..opq`) hide only what lower layers made.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest as _, Sha256};
use tracing::debug;

use super::layout::{Check, Layer, hex};
use super::{ImageError, io_err};

/// Bounds the symbolic links followed while resolving one path (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// A rootfs being built from layers; `budget` checks the running total of unpacked bytes and
/// its error stops the unpack.
pub(crate) struct Unpacker<'a, F> {
    image: &'a Path,
    root: PathBuf,
    same_owner: bool,
    /// Directory modes, applied at the end so that a read-only directory still takes its files.
    dir_modes: Vec<(PathBuf, u32)>,
    written: u64,
    budget: F,
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A layer's tar stream, plain or gzip (told apart by magic bytes).
enum Decoded<R: BufRead> {
    Plain(R),
    Gzip(MultiGzDecoder<R>),
}

impl<R: BufRead> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
        }
    }
}

impl<R: BufRead> Decoded<R> {
    fn into_inner(self) -> R {
        match self {
            Decoded::Plain(r) => r,
            Decoded::Gzip(r) => r.into_inner(),
        }
    }
}

/// The relative path of an entry name: `None` when `..` climbs above the top.
fn relative(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Removes whatever is at `path` without following a link there.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl<'a, F: FnMut(u64) -> Result<(), ImageError>> Unpacker<'a, F> {
    /// Builds into `root` (an empty directory) for `image`, checking sizes against `budget`.
    pub(crate) fn new(image: &'a Path, root: PathBuf, budget: F) -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let same_owner = unsafe { libc::geteuid() } == 0;
        Unpacker {
            image,
            root,
            same_owner,
            dir_modes: Vec::new(),
            written: 0,
            budget,
        }
    }

    fn unsafe_entry(&self, entry: &Path, why: &str) -> ImageError {
        ImageError::UnsafeEntry {
            image: self.image.to_path_buf(),
            entry: entry.display().to_string(),
            why: why.to_owned(),
        }
    }

    fn layer_err(&self, layer: &str) -> impl Fn(io::Error) -> ImageError + '_ {
        let layer = layer.to_owned();
        move |e| ImageError::BadManifest {
            image: self.image.to_path_buf(),
            detail: format!("layer {layer} cannot be read as a tar archive ({e})"),
        }
    }

    /// Resolves the directory `rel` inside the rootfs as the container would see it, creating
    /// missing directories when `create`; `None` when it is absent and not created.
    fn resolve_dir(
        &self,
        rel: &Path,
        entry: &Path,
        create: bool,
    ) -> Result<Option<PathBuf>, ImageError> {
        let mut queue: VecDeque<OsString> = rel.iter().map(OsStr::to_os_string).collect();
        let mut current = self.root.clone();
        let mut links = 0;
        while let Some(part) = queue.pop_front() {
            if part == ".." {
                if current != self.root {
                    current.pop();
                }
                continue;
            }
            if part == "." || part.is_empty() {
                continue;
            }
            let next = current.join(&part);
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(
                            self.unsafe_entry(entry, "passes through too many symbolic links")
                        );
                    }
                    let target = fs::read_link(&next).map_err(io_err(&next))?;
                    if target.is_absolute() {
                        current = self.root.clone();
                    }
                    for part in target.iter().rev() {
                        if part != "/" {
                            queue.push_front(part.to_os_string());
                        }
                    }
                }
                Ok(meta) if meta.is_dir() => current = next,
                Ok(_) => {
                    return Err(ImageError::BadManifest {
                        image: self.image.to_path_buf(),
                        detail: format!(
                            "layer entry {} lies under a file that is not a directory",
                            entry.display()
                        ),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    // A directory the layer does not list gets 0755, whatever the umask.
                    fs::create_dir(&next).map_err(io_err(&next))?;
                    fs::set_permissions(&next, fs::Permissions::from_mode(0o755))
                        .map_err(io_err(&next))?;
                    current = next;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err(&next)(e)),
            }
        }
        Ok(Some(current))
    }

    /// Applies one layer read from `reader`, verifying the digest `layer.check` names.
    pub(crate) fn apply_layer(
        &mut self,
        reader: impl Read,
        layer: &Layer,
    ) -> Result<(), ImageError> {
        let raw = Hashing {
            inner: reader,
            hasher: Sha256::new(),
        };
        let mut buffered = BufReader::new(raw);
        let magic = buffered.fill_buf().map_err(self.layer_err(&layer.name))?;
        let decoded = if magic.starts_with(&[0x1f, 0x8b]) {
            Decoded::Gzip(MultiGzDecoder::new(buffered))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(ImageError::BadManifest {
                image: self.image.to_path_buf(),
                detail: format!(
                    "layer {} is zstd-compressed; only plain and gzip layers are supported, save the image with gzip layers",
                    layer.name
                ),
            });
        } else {
            Decoded::Plain(buffered)
        };
        let mut archive = tar::Archive::new(Hashing {
            inner: decoded,
            hasher: Sha256::new(),
        });
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_preserve_ownerships(self.same_owner);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        let mut made = HashSet::new();
        for entry in archive.entries().map_err(self.layer_err(&layer.name))? {
            let mut entry = entry.map_err(self.layer_err(&layer.name))?;
            self.apply_entry(&mut entry, &mut made)?;
        }
        // Read to the end so that the digests cover the whole blob, not just the tar's records.
        let mut uncompressed = archive.into_inner();
        io::copy(&mut uncompressed, &mut io::sink()).map_err(self.layer_err(&layer.name))?;
        let diff = hex(&uncompressed.hasher.finalize());
        let mut rest = uncompressed.inner.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(self.layer_err(&layer.name))?;
        let blob = hex(&rest.into_inner().hasher.finalize());
        let (expected, actual) = match &layer.check {
            Check::Blob(expected) => (expected, blob),
            Check::Uncompressed(expected) => (expected, diff),
        };
        if *expected != actual {
            return Err(ImageError::DigestMismatch {
                image: self.image.to_path_buf(),
                blob: layer.name.clone(),
                expected: format!("sha256:{expected}"),
                actual,
            });
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        made: &mut HashSet<PathBuf>,
    ) -> Result<(), ImageError> {
        let name = PathBuf::from(OsStr::from_bytes(&entry.path_bytes()));
        let rel = relative(&name)
            .ok_or_else(|| self.unsafe_entry(&name, "climbs out of the root with .."))?;
        let (Some(file_name), Some(parent_rel)) = (rel.file_name(), rel.parent()) else {
            return Ok(()); // the root itself
        };
        let kind = entry.header().entry_type();
        if let Some(hidden) = file_name.to_str().and_then(|n| n.strip_prefix(WHITEOUT)) {
            if let Some(parent) = self.resolve_dir(parent_rel, &name, false)? {
                if file_name == OPAQUE {
                    clear_lower(&parent, made).map_err(io_err(&parent))?;
                } else if !hidden.is_empty() && !made.contains(&parent.join(hidden)) {
                    let target = parent.join(hidden);
                    remove_any(&target).map_err(io_err(&target))?;
                }
            }
            return Ok(());
        }
        let parent = self
            .resolve_dir(parent_rel, &name, true)?
            .ok_or_else(|| self.unsafe_entry(&name, "has no parent directory"))?;
        let dst = parent.join(file_name);
        if kind.is_dir() {
            if !fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
                remove_any(&dst).map_err(io_err(&dst))?;
                fs::create_dir(&dst).map_err(io_err(&dst))?;
            }
            let mode = entry.header().mode().unwrap_or(0o755);
            if self.same_owner {
                let (uid, gid) = (entry.header().uid().ok(), entry.header().gid().ok());
                let to_u32 = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
                std::os::unix::fs::lchown(&dst, to_u32(uid), to_u32(gid)).map_err(io_err(&dst))?;
            }
            self.dir_modes.push((dst.clone(), mode));
        } else if kind.is_file() || kind == tar::EntryType::GNUSparse {
            let total = self.written.saturating_add(entry.size());
            (self.budget)(total)?;
            self.written = total;
            remove_any(&dst).map_err(io_err(&dst))?;
            entry.unpack(&dst).map_err(io_err(&dst))?;
        } else if kind.is_symlink() {
            remove_any(&dst).map_err(io_err(&dst))?;
            entry.unpack(&dst).map_err(io_err(&dst))?;
        } else if kind.is_hard_link() {
            let target = self.hard_link_target(entry, &name)?;
            remove_any(&dst).map_err(io_err(&dst))?;
            fs::hard_link(&target, &dst).map_err(io_err(&dst))?;
        } else {
            debug!(image = %self.image.display(), entry = %name.display(), kind = ?kind,
                "skipping a layer entry that is not a file, directory or link (device node or fifo)");
            return Ok(());
        }
        made.insert(dst);
        Ok(())
    }

    /// The regular file inside the rootfs that a hard link entry points at.
    fn hard_link_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        name: &Path,
    ) -> Result<PathBuf, ImageError> {
        let link = entry
            .link_name()
            .ok()
            .flatten()
            .ok_or_else(|| self.unsafe_entry(name, "is a hard link without a target"))?;
        let rel = relative(&link)
            .ok_or_else(|| self.unsafe_entry(name, "is a hard link climbing out of the root"))?;
        let (Some(file_name), Some(parent_rel)) = (rel.file_name(), rel.parent()) else {
            return Err(self.unsafe_entry(name, "is a hard link to the root"));
        };
        let target = self
            .resolve_dir(parent_rel, name, false)?
            .map(|dir| dir.join(file_name))
            .filter(|t| fs::symlink_metadata(t).is_ok_and(|m| m.is_file()));
        target.ok_or_else(|| {
            self.unsafe_entry(
                name,
                "is a hard link to something that is not a regular file inside the image",
            )
        })
    }

    /// Sets the directories' modes, creates the container's mount points and gives the bytes
    /// of files written.
    pub(crate) fn finish(self) -> Result<u64, ImageError> {
        for (dir, mode) in &self.dir_modes {
            match fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(dir)(e)),
                _ => {}
            }
        }
        for (dir, mode) in [
            ("proc", 0o555),
            ("dev", 0o755),
            ("sys", 0o555),
            ("tmp", 0o1777),
        ] {
            let path = self.root.join(dir);
            if fs::symlink_metadata(&path).is_err() {
                fs::create_dir(&path).map_err(io_err(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(io_err(&path))?;
            }
        }
        Ok(self.written)
    }
}

/// Empties `dir` for an opaque whiteout, keeping what the current layer made (`made`) and
/// clearing lower content beneath the directories it kept.
fn clear_lower(dir: &Path, made: &HashSet<PathBuf>) -> io::Result<()> {
    for child in fs::read_dir(dir)? {
        let path = child?.path();
        if !made.contains(&path) {
            remove_any(&path)?;
        } else if fs::symlink_metadata(&path)?.is_dir() {
            clear_lower(&path, made)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_stay_relative() {
        assert_eq!(
            relative(Path::new("/etc/passwd")),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(relative(Path::new("./a/../b")), Some(PathBuf::from("b")));
        assert_eq!(relative(Path::new("a/../../b")), None);
        assert_eq!(relative(Path::new("../escape")), None);
    }

    #[test]
    fn parents_resolve_inside_the_root_through_absolute_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).expect("symlink");
        std::os::unix::fs::symlink("../../../..", root.join("up")).expect("symlink");
        let image = Path::new("img");
        let unpacker = Unpacker::new(image, root.clone(), |_| Ok(()));
        let lib = unpacker
            .resolve_dir(Path::new("lib/x"), Path::new("e"), true)
            .expect("resolve");
        assert_eq!(lib, Some(root.join("usr/lib/x")));
        let up = unpacker
            .resolve_dir(Path::new("up/etc"), Path::new("e"), true)
            .expect("resolve");
        assert_eq!(up, Some(root.join("etc")), "`..` stops at the root");
        assert_eq!(
            unpacker
                .resolve_dir(Path::new("absent"), Path::new("e"), false)
                .expect("ok"),
            None
        );
    }
}
