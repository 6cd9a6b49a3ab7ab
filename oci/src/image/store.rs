//! The content-addressed store of unpacked images.
//!
//! ```text
//! STORE/sha256/<hex>/rootfs     the unpacked tree (a container's root.path)
//! STORE/sha256/<hex>/size       its bytes (regular files, hard links counted once)
//! STORE/sha256/<hex>/last-used  touched at each resolve: the LRU order
//! STORE/sha256/<hex>/defaults.json  the image configuration's Env, Entrypoint, Cmd, WorkingDir, User
//! STORE/sources/<key hash>      a tarball's (path, device, inode, size, mtime) → <hex>
//! STORE/tmp/                    images being built or removed (cleared at open)
//! ```
//! One agent owns a store. An image is built under `tmp/` and renamed into `sha256/` whole, and
//! removed by a rename out of it first, so a crash leaves no half image under `sha256/`.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tracing::{debug, info};

use super::defaults::ImageDefaults;
use super::layout::{self, sha256_hex};
use super::source::Source;
use super::unpack::Unpacker;
use super::{ImageError, RootFs, io_err};

/// Tells apart temporary directories made by this process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The file beside an unpacked image's `rootfs` holding its [`ImageDefaults`].
const DEFAULTS: &str = "defaults.json";

/// A store of unpacked images under one directory, holding at most `cap_bytes`.
#[derive(Debug)]
pub struct ImageStore {
    dir: PathBuf,
    cap_bytes: u64,
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Images removed.
    pub removed: usize,
    /// Their bytes.
    pub freed_bytes: u64,
}

/// An unpacked image as the store lists it.
#[derive(Debug)]
struct Stored {
    hex: String,
    bytes: u64,
    last_used: SystemTime,
}

/// Whether `hex` is among `in_use` (`sha256:<hex>` or bare hex).
fn listed(in_use: &[&str], hex: &str) -> bool {
    in_use
        .iter()
        .any(|d| d.strip_prefix("sha256:").unwrap_or(d) == hex)
}

fn create_private_dir(path: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

impl ImageStore {
    /// Opens (creating, mode 0700) the store in `dir`, holding at most `cap_bytes` of unpacked
    /// images, and clears what an interrupted unpack or removal left in `tmp/`.
    pub fn open(dir: &Path, cap_bytes: u64) -> Result<Self, ImageError> {
        for sub in ["", "sha256", "sources", "tmp"] {
            create_private_dir(&dir.join(sub))?;
        }
        let tmp = dir.join("tmp");
        for leftover in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let path = leftover.map_err(io_err(&tmp))?.path();
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
        }
        Ok(ImageStore {
            dir: dir.to_path_buf(),
            cap_bytes,
        })
    }

    /// The store's cap in bytes.
    pub fn cap_bytes(&self) -> u64 {
        self.cap_bytes
    }

    fn image_dir(&self, hex: &str) -> PathBuf {
        self.dir.join("sha256").join(hex)
    }

    /// The root filesystem for the job image `image`: a plain directory as it is, any other
    /// image unpacked into the store (once; later calls reuse it). `in_use` lists the digests of
    /// live jobs' images, which are never removed to make room.
    pub fn resolve(&self, image: &Path, in_use: &[&str]) -> Result<RootFs, ImageError> {
        let meta = fs::metadata(image).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::NotFound {
                image: image.to_path_buf(),
            },
            _ => io_err(image)(e),
        })?;
        let source = if meta.is_dir() {
            if !image.join("oci-layout").exists() {
                return Ok(RootFs {
                    path: image.to_path_buf(),
                    digest: None,
                    defaults: ImageDefaults::default(),
                });
            }
            Source::Dir(image.to_path_buf())
        } else if meta.is_file() {
            let cached = self.cached_source(image, &meta);
            if let Some(rootfs) = cached.map(|hex| self.reuse(&hex)).transpose()?.flatten() {
                return Ok(rootfs);
            }
            Source::open_tar(image)?
        } else {
            return Err(ImageError::Unrecognized {
                image: image.to_path_buf(),
                detail: "is neither a directory nor a file".into(),
            });
        };
        let plan = layout::plan(&source)?;
        if meta.is_file() {
            self.remember_source(image, &meta, &plan.digest)?;
        }
        if let Some(rootfs) = self.reuse(&plan.digest)? {
            return Ok(rootfs);
        }
        self.unpack(&source, &plan, in_use)
    }

    /// The stored image `hex`, marked used now, if it is there.
    fn reuse(&self, hex: &str) -> Result<Option<RootFs>, ImageError> {
        let dir = self.image_dir(hex);
        if !dir.join("rootfs").is_dir() {
            return Ok(None);
        }
        touch(&dir.join("last-used"))?;
        Ok(Some(RootFs {
            path: dir.join("rootfs"),
            digest: Some(format!("sha256:{hex}")),
            defaults: ImageDefaults::load(&dir.join(DEFAULTS)),
        }))
    }

    fn source_key_path(&self, image: &Path, meta: &fs::Metadata) -> PathBuf {
        let key = format!(
            "{}\0{}\0{}\0{}\0{}.{}",
            image.display(),
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        self.dir.join("sources").join(sha256_hex(key.as_bytes()))
    }

    fn cached_source(&self, image: &Path, meta: &fs::Metadata) -> Option<String> {
        let hex = fs::read_to_string(self.source_key_path(image, meta)).ok()?;
        layout::parse_sha256(&format!("sha256:{}", hex.trim()))
    }

    fn remember_source(
        &self,
        image: &Path,
        meta: &fs::Metadata,
        hex: &str,
    ) -> Result<(), ImageError> {
        let path = self.source_key_path(image, meta);
        let tmp = self.tmp_path("source");
        fs::write(&tmp, hex).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{what}-{}-{seq}", std::process::id()))
    }

    /// The unpacked images, least recently used first.
    fn list(&self) -> Result<Vec<Stored>, ImageError> {
        let root = self.dir.join("sha256");
        let mut images = Vec::new();
        for entry in fs::read_dir(&root).map_err(io_err(&root))? {
            let entry = entry.map_err(io_err(&root))?;
            let Some(hex) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let dir = entry.path();
            let bytes = fs::read_to_string(dir.join("size"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let last_used = fs::metadata(dir.join("last-used"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            images.push(Stored {
                hex,
                bytes,
                last_used,
            });
        }
        images.sort_by_key(|s| (s.last_used, s.hex.clone()));
        Ok(images)
    }

    /// Bytes held by all unpacked images.
    pub fn used_bytes(&self) -> Result<u64, ImageError> {
        Ok(self.list()?.iter().map(|s| s.bytes).sum())
    }

    /// Removes the unpacked image `hex`: out of `sha256/` first, then deleted.
    fn remove(&self, hex: &str) -> Result<(), ImageError> {
        let from = self.image_dir(hex);
        let to = self.tmp_path(&format!("gc-{hex}"));
        fs::rename(&from, &to).map_err(io_err(&from))?;
        fs::remove_dir_all(&to).map_err(io_err(&to))?;
        info!(image = %hex, "removed an unused image from the image store");
        Ok(())
    }

    /// Removes every unpacked image whose digest is not in `in_use` (`sha256:<hex>`, as
    /// [`RootFs::digest`] gives), and the tarball cache entries that pointed at them.
    pub fn gc(&self, in_use: &[&str]) -> Result<GcReport, ImageError> {
        let mut report = GcReport::default();
        for image in self.list()? {
            if !listed(in_use, &image.hex) {
                self.remove(&image.hex)?;
                report.removed += 1;
                report.freed_bytes += image.bytes;
            }
        }
        let sources = self.dir.join("sources");
        for entry in fs::read_dir(&sources).map_err(io_err(&sources))? {
            let path = entry.map_err(io_err(&sources))?.path();
            let target = fs::read_to_string(&path).unwrap_or_default();
            if !self.image_dir(target.trim()).is_dir() || target.trim().is_empty() {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(report)
    }

    /// Unpacks `plan` under `tmp/` and renames it into place, removing unused images (least
    /// recently used first) to stay under the cap.
    fn unpack(
        &self,
        source: &Source,
        plan: &layout::Plan,
        in_use: &[&str],
    ) -> Result<RootFs, ImageError> {
        let image = source.image();
        let mut others = self.list()?;
        others.retain(|s| s.hex != plan.digest);
        let mut used: u64 = others.iter().map(|s| s.bytes).sum();
        let mut evictable: Vec<Stored> = others
            .into_iter()
            .filter(|s| !listed(in_use, &s.hex))
            .collect();
        evictable.reverse(); // pop() gives the least recently used
        let mut make_room = |needed: u64| -> Result<(), ImageError> {
            while used.saturating_add(needed) > self.cap_bytes {
                let Some(victim) = evictable.pop() else {
                    return Err(ImageError::TooLarge {
                        image: image.to_path_buf(),
                        bytes: needed,
                        cap: self.cap_bytes,
                        in_use: used,
                    });
                };
                self.remove(&victim.hex)?;
                used -= victim.bytes;
            }
            Ok(())
        };
        // The stored layers' size is the least an unpack is expected to need; make room for it
        // now, and for more as the unpack goes on.
        // An error here is not final: compressed layers may unpack smaller than they are stored.
        let _ = make_room(plan.blob_bytes().min(self.cap_bytes));

        let tmp = self.tmp_path(&plan.digest);
        let rootfs = tmp.join("rootfs");
        create_private_dir(&tmp)?;
        fs::create_dir(&rootfs).map_err(io_err(&rootfs))?;
        fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755)).map_err(io_err(&rootfs))?;
        let built = self
            .build(source, plan, &rootfs, &mut make_room)
            .and_then(|()| {
                let bytes = tree_bytes(&rootfs)?;
                fs::write(tmp.join("size"), bytes.to_string()).map_err(io_err(&tmp))?;
                let defaults = serde_json::to_vec(&plan.defaults).map_err(io::Error::other);
                let path = tmp.join(DEFAULTS);
                defaults
                    .and_then(|d| fs::write(&path, d))
                    .map_err(io_err(&path))?;
                touch(&tmp.join("last-used"))?;
                Ok(bytes)
            });
        let bytes = match built {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dest = self.image_dir(&plan.digest);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            // Another resolve of the same image finished first: use its copy.
            if let Some(rootfs) = self.reuse(&plan.digest)? {
                return Ok(rootfs);
            }
            return Err(io_err(&dest)(e));
        }
        info!(image = %image.display(), digest = %plan.digest, bytes, "unpacked an image into the image store");
        Ok(RootFs {
            path: dest.join("rootfs"),
            digest: Some(format!("sha256:{}", plan.digest)),
            defaults: plan.defaults.clone(),
        })
    }

    fn build(
        &self,
        source: &Source,
        plan: &layout::Plan,
        rootfs: &Path,
        make_room: &mut dyn FnMut(u64) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        let mut unpacker = Unpacker::new(source.image(), rootfs.to_path_buf(), make_room);
        for layer in &plan.layers {
            let (reader, size) = source.open(&layer.name)?;
            if size != layer.size {
                return Err(ImageError::BadManifest {
                    image: source.image().to_path_buf(),
                    detail: format!(
                        "layer {} has {size} bytes, its manifest says {}",
                        layer.name, layer.size
                    ),
                });
            }
            debug!(layer = %layer.name, size, "applying a layer");
            unpacker.apply_layer(reader, layer)?;
        }
        unpacker.finish().map(drop)
    }
}

/// Sets `path`'s modification time to now, creating it if absent.
fn touch(path: &Path) -> Result<(), ImageError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_modified(SystemTime::now()).map_err(io_err(path))
}

/// The bytes of the regular files under `root`, each inode counted once.
fn tree_bytes(root: &Path) -> Result<u64, ImageError> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let meta = entry.metadata().map_err(io_err(&entry.path()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && seen.insert(meta.ino()) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
