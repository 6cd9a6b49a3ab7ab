//! Reading an image's files (`index.json`, `manifest.json`, blobs) from a layout directory or
//! from a tarball, without unpacking the tarball.
//!
//! A tarball is scanned once for its members' offsets (seeking over their data); a member is then
//! read in place. Member names are compared as normalized relative paths, so a name can never
//! reach a file outside the image, and a tarball's symbolic links (`docker save` links repeated
//! layers) are followed inside the tarball only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use super::{ImageError, io_err};

/// Manifests, indexes and configs are small; a larger one is refused rather than read whole.
const MAX_METADATA_BYTES: u64 = 16 << 20;
/// Bounds the symbolic links followed for one member name.
const MAX_LINK_HOPS: usize = 8;

/// Where an image's files are read from.
#[derive(Debug)]
pub(crate) enum Source {
    /// An OCI image layout directory.
    Dir(PathBuf),
    /// A tarball and its members.
    Tar {
        path: PathBuf,
        members: HashMap<String, Member>,
    },
}

/// A tarball member: its data's place in the file, or the member it links to.
#[derive(Debug, Clone)]
pub(crate) enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// Normalizes a relative member name (`./a//b/../c` → `a/c`); `None` when it is absolute or
/// climbs above the image's top.
pub(crate) fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

impl Source {
    /// Scans the tarball at `path`.
    pub(crate) fn open_tar(image: &Path) -> Result<Self, ImageError> {
        let mut file = File::open(image).map_err(io_err(image))?;
        let mut magic = [0u8; 4];
        let got = file.read(&mut magic).map_err(io_err(image))?;
        if got >= 2 && magic[..2] == [0x1f, 0x8b] {
            return Err(ImageError::Unrecognized {
                image: image.to_path_buf(),
                detail: "is gzip-compressed; decompress it (gunzip) and name the .tar".into(),
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(io_err(image))?;
        let not_tar = |e: io::Error| ImageError::Unrecognized {
            image: image.to_path_buf(),
            detail: format!("is a file but not a readable tar archive ({e})"),
        };
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let Some(name) = std::str::from_utf8(&entry.path_bytes())
                .ok()
                .and_then(normalize)
            else {
                continue;
            };
            let kind = entry.header().entry_type();
            let member = if kind.is_file() {
                Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name().map_err(not_tar)? else {
                    continue;
                };
                let target = target.to_string_lossy();
                // A symlink is relative to its own directory, a hard link to the archive's top.
                let joined = match (kind.is_symlink(), name.rsplit_once('/')) {
                    (true, Some((dir, _))) => format!("{dir}/{target}"),
                    _ => target.into_owned(),
                };
                match normalize(&joined) {
                    Some(target) => Member::Link(target),
                    None => continue,
                }
            } else {
                continue;
            };
            members.insert(name, member);
        }
        Ok(Source::Tar {
            path: image.to_path_buf(),
            members,
        })
    }

    /// The image path, for messages.
    pub(crate) fn image(&self) -> &Path {
        match self {
            Source::Dir(path) | Source::Tar { path, .. } => path,
        }
    }

    fn missing(&self, name: &str) -> ImageError {
        ImageError::BadManifest {
            image: self.image().to_path_buf(),
            detail: format!("{name} is missing from the image"),
        }
    }

    /// The tarball member `name` names after following links.
    fn member(&self, members: &HashMap<String, Member>, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name)?;
        for _ in 0..MAX_LINK_HOPS {
            match members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }

    /// Whether the image has a file `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(dir) => normalize(name).is_some_and(|n| dir.join(n).is_file()),
            Source::Tar { members, .. } => self.member(members, name).is_some(),
        }
    }

    /// Opens the file `name` and gives its size.
    pub(crate) fn open(&self, name: &str) -> Result<(Box<dyn Read>, u64), ImageError> {
        match self {
            Source::Dir(dir) => {
                let rel = normalize(name).ok_or_else(|| self.missing(name))?;
                let path = dir.join(rel);
                let file = File::open(&path).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => self.missing(name),
                    _ => io_err(&path)(e),
                })?;
                let size = file.metadata().map_err(io_err(&path))?.len();
                Ok((Box::new(BufReader::new(file)), size))
            }
            Source::Tar { path, members } => {
                let (offset, size) = self
                    .member(members, name)
                    .ok_or_else(|| self.missing(name))?;
                let mut file = File::open(path).map_err(io_err(path))?;
                file.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
                Ok((Box::new(BufReader::new(file).take(size)), size))
            }
        }
    }

    /// Reads the small file `name` (a manifest, index or config) whole.
    pub(crate) fn read(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let (reader, size) = self.open(name)?;
        if size > MAX_METADATA_BYTES {
            return Err(ImageError::BadManifest {
                image: self.image().to_path_buf(),
                detail: format!("{name} has {size} bytes, more than a manifest or config can"),
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .take(MAX_METADATA_BYTES)
            .read_to_end(&mut bytes)
            .map_err(io_err(self.image()))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_inside_the_image() {
        assert_eq!(normalize("./a//b/../c").as_deref(), Some("a/c"));
        assert_eq!(
            normalize("blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("/etc/passwd"), None);
    }

    #[test]
    fn tar_members_are_read_in_place_and_links_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("img.tar");
        let mut builder = tar::Builder::new(File::create(&path).expect("create"));
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "./one/layer.tar", &b"hello"[..])
            .expect("append");
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder
            .append_link(&mut link, "two/layer.tar", "../one/layer.tar")
            .expect("link");
        let mut escape = tar::Header::new_gnu();
        escape.set_entry_type(tar::EntryType::Symlink);
        escape.set_size(0);
        builder
            .append_link(&mut escape, "out", "../../etc/passwd")
            .expect("link");
        builder.finish().expect("finish");
        drop(builder);

        let source = Source::open_tar(&path).expect("scan");
        assert_eq!(source.read("two/layer.tar").expect("read"), b"hello");
        assert_eq!(source.read("one/layer.tar").expect("read"), b"hello");
        assert!(!source.has("out"), "a link out of the tarball is ignored");
        let err = source.read("nothing").unwrap_err();
        assert!(err.to_string().contains("nothing is missing"), "{err}");
    }
}
