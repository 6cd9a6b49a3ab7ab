//! Paths as capabilities: a client names kernels and images only beneath the operator's
//! `offline.image_roots`, disks only beneath `offline.volume_roots` (plus the operator's own
//! `offline.kernel` and `offline.workload`, allowed as they are). The agent resolves a name with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from the root's
//! directory, so neither `..` nor a symlink planted under a root reaches anything outside it,
//! checks the file's type (block devices only where the root allows them), and hands the VMM the
//! open descriptor: the VMM never resolves a client's path with its own rights.
//!
//! Cost: two `openat2` and two `fstat` per file at submit, again at launch.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::model::{Guest, JobSpec};
use colo_config::job::truncate;

/// Which roots a path must lie beneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// Kernels, initramfs and root filesystem images (`offline.image_roots`).
    Image,
    /// Disks and volumes (`offline.volume_roots`).
    Volume,
}

impl RootKind {
    /// The agent.yaml key that lists these roots.
    pub fn key(self) -> &'static str {
        match self {
            Self::Image => "offline.image_roots",
            Self::Volume => "offline.volume_roots",
        }
    }
}

/// What a resolved path may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// A directory (a container's volume).
    Dir,
    /// A directory or a regular file (a container's image: a root filesystem directory, or an
    /// image tarball).
    DirOrFile,
}

/// A path resolved beneath its root: the path it was found at (free of symlinks and `..` when
/// resolved) and what it is.
#[derive(Debug)]
pub struct Resolved {
    /// The host path.
    pub path: PathBuf,
    /// It is a directory.
    pub is_dir: bool,
    /// An `O_PATH` descriptor of exactly what was checked: a sandbox that mounts by path
    /// mounts this (see `/proc/self/fd/N`), not the path, which a client with write access
    /// beneath the root could swap for a symlink after the check.
    pub pinned: OwnedFd,
}

/// One directory a client may name files beneath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The directory (absolute; the operator's, so symlinks in it are trusted).
    pub dir: PathBuf,
    /// Block devices beneath it may be opened.
    pub devices: bool,
}

/// The roots of a node, from agent.yaml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathRoots {
    /// Kernels and images.
    pub images: Vec<Root>,
    /// Disks and volumes.
    pub volumes: Vec<Root>,
    /// Files the operator configured (`offline.kernel`, `offline.workload`): a client may name
    /// them as images, read-only.
    pub operator_files: Vec<PathBuf>,
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path, or one with a NUL byte or a `..` component.
    #[error("must be an absolute path without NUL or `..` beneath {key} ({roots}), got {path:?}")]
    Malformed {
        /// The path as given.
        path: String,
        /// The agent.yaml key.
        key: &'static str,
        /// The roots, listed.
        roots: String,
    },
    /// Beneath none of the roots of its kind.
    #[error("{path:?} is not beneath {key} ({roots}); the operator allows client files only there")]
    OutsideRoots {
        /// The path as given.
        path: String,
        /// The agent.yaml key.
        key: &'static str,
        /// The roots, listed.
        roots: String,
    },
    /// The file does not exist, a symlink was met, or it escapes the root.
    #[error("cannot open {path:?} beneath {root}: {source}{hint}")]
    Open {
        /// The path as given.
        path: String,
        /// The root it was resolved from.
        root: String,
        /// The OS error.
        source: std::io::Error,
        /// What the error means here.
        hint: &'static str,
    },
    /// A directory, FIFO, socket, character device, or a block device where none is allowed.
    #[error("{path:?} is a {kind}; {rule}")]
    WrongType {
        /// The path as given.
        path: String,
        /// What it is.
        kind: &'static str,
        /// What is allowed.
        rule: &'static str,
    },
    /// The file changed between the type check and the open.
    #[error("{0:?} changed while it was being opened; try again")]
    Raced(String),
}

struct RootList<'a>(&'a [Root]);

impl fmt::Display for RootList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none configured");
        }
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", r.dir.display())?;
            if r.devices {
                f.write_str(" (devices allowed)")?;
            }
        }
        Ok(())
    }
}

impl PathRoots {
    fn roots(&self, kind: RootKind) -> &[Root] {
        match kind {
            RootKind::Image => &self.images,
            RootKind::Volume => &self.volumes,
        }
    }

    /// The root of `kind` that `path` lies beneath (the deepest one), and the path relative to
    /// it; refuses a malformed path or one beneath no root.
    fn beneath<'a, 'p>(
        &'a self,
        kind: RootKind,
        path: &'p str,
    ) -> Result<(&'a Root, &'p Path), PathError> {
        let p = Path::new(path);
        let roots = self.roots(kind);
        if !p.is_absolute()
            || path.contains('\0')
            || p.components().any(|c| c == Component::ParentDir)
        {
            return Err(PathError::Malformed {
                path: truncate(path),
                key: kind.key(),
                roots: RootList(roots).to_string(),
            });
        }
        let Some(root) = roots
            .iter()
            .filter(|r| p.starts_with(&r.dir) && p != r.dir)
            .max_by_key(|r| r.dir.as_os_str().len())
        else {
            return Err(PathError::OutsideRoots {
                path: truncate(path),
                key: kind.key(),
                roots: RootList(roots).to_string(),
            });
        };
        Ok((root, p.strip_prefix(&root.dir).unwrap_or(p)))
    }

    /// Finds `path` beneath its root and looks at what it names through an `O_PATH` descriptor:
    /// that opens nothing (no device side effects, no FIFO wait), only names the inode, so its
    /// type can be checked before any real open.
    fn probe<'a, 'p>(&'a self, kind: RootKind, path: &'p str) -> Result<Probe<'a, 'p>, PathError> {
        let (root, rel) = self.beneath(kind, path)?;
        let open_err = |source| open_error(path, root, source);
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&root.dir)
            .map_err(open_err)?;
        let target = File::from(openat2(&dir, rel, libc::O_PATH).map_err(open_err)?);
        let meta = target.metadata().map_err(open_err)?;
        Ok(Probe {
            root,
            rel,
            dir,
            meta,
            target: OwnedFd::from(target),
        })
    }

    /// Opens `path` for reading (and writing when `write`) if it lies beneath a root of `kind`;
    /// returns the descriptor to hand to the sandbox.
    pub fn open(&self, kind: RootKind, path: &str, write: bool) -> Result<OwnedFd, PathError> {
        let p = Path::new(path);
        if kind == RootKind::Image
            && !write
            && self.operator_files.iter().any(|f| f == p)
            && p.is_absolute()
            && !path.contains('\0')
            && !p.components().any(|c| c == Component::ParentDir)
        {
            return File::open(p)
                .map(OwnedFd::from)
                .map_err(|source| PathError::Open {
                    path: path.to_string(),
                    root: "the operator's configuration".into(),
                    source,
                    hint: "",
                });
        }
        let Probe {
            root,
            rel,
            dir,
            meta,
            ..
        } = self.probe(kind, path)?;
        let open_err = |source| open_error(path, root, source);
        let ft = meta.file_type();
        let wrong = |kind: &'static str, rule: &'static str| PathError::WrongType {
            path: path.to_string(),
            kind,
            rule,
        };
        if ft.is_block_device() {
            if !root.devices {
                return Err(wrong(
                    "block device",
                    "this root does not allow devices (set `devices: true` on it)",
                ));
            }
        } else if !ft.is_file() {
            let kind = if ft.is_dir() {
                "directory"
            } else if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_char_device() {
                "character device"
            } else {
                "special file"
            };
            return Err(wrong(kind, "only regular files (or allowed block devices)"));
        }
        let mode = if write { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = openat2(&dir, rel, mode | libc::O_NOCTTY).map_err(open_err)?;
        let f = File::from(fd);
        let again = f.metadata().map_err(open_err)?;
        if again.dev() != meta.dev() || again.ino() != meta.ino() {
            return Err(PathError::Raced(path.to_string()));
        }
        Ok(OwnedFd::from(f))
    }
}

impl PathRoots {
    /// Resolves `path` beneath a root of `kind` (no symlink, no `..`) to a directory, or to a
    /// directory or regular file as `accept` says, for a sandbox that mounts it by path. With
    /// `write`, the directory must be writable by the agent.
    pub fn resolve(
        &self,
        kind: RootKind,
        path: &str,
        write: bool,
        accept: Accept,
    ) -> Result<Resolved, PathError> {
        let Probe {
            root,
            rel,
            meta,
            target,
            ..
        } = self.probe(kind, path)?;
        let open_err = |source| open_error(path, root, source);
        let ft = meta.file_type();
        let ok = ft.is_dir() || (accept == Accept::DirOrFile && ft.is_file());
        if !ok {
            return Err(PathError::WrongType {
                path: path.to_string(),
                kind: if ft.is_file() {
                    "regular file"
                } else {
                    "special file"
                },
                rule: match accept {
                    Accept::Dir => "a volume must be a directory",
                    Accept::DirOrFile => {
                        "an image must be a directory or an image file (OCI layout or docker save tarball)"
                    }
                },
            });
        }
        let full = root.dir.join(rel);
        if write && ft.is_dir() {
            let c = CString::new(full.as_os_str().as_bytes())
                .map_err(|_| open_err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
            // SAFETY: access(2) with a NUL-terminated path; it only reads.
            if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
                return Err(open_err(std::io::Error::last_os_error()));
            }
        }
        Ok(Resolved {
            path: full,
            is_dir: ft.is_dir(),
            pinned: target,
        })
    }
}

/// A path found beneath its root (see [`PathRoots::probe`]).
struct Probe<'a, 'p> {
    root: &'a Root,
    rel: &'p Path,
    /// The root's directory, to open `rel` from.
    dir: File,
    /// What `rel` names.
    meta: std::fs::Metadata,
    /// `rel`, opened `O_PATH`.
    target: OwnedFd,
}

/// `source` opening `path` beneath `root`, with what the error means here.
fn open_error(path: &str, root: &Root, source: std::io::Error) -> PathError {
    PathError::Open {
        path: path.to_string(),
        root: root.dir.display().to_string(),
        hint: hint(&source),
        source,
    }
}

fn hint(source: &std::io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::ELOOP) => " (symlinks are not followed beneath a root)",
        Some(libc::EXDEV) => " (the path leaves its root)",
        Some(libc::ENOSYS) => {
            " (openat2 needs Linux >= 5.6, and no seccomp filter that refuses it: systemd's RestrictSUIDSGID=yes does)"
        }
        _ => "",
    }
}

/// Opens every file a job names (a Linux guest's kernel and root filesystem, then its disks, in
/// that order) beneath its roots, and returns a copy of the spec whose paths name the
/// descriptors the VMM inherits (`/proc/self/fd/3`, `4`, ...), with the descriptors to pass.
pub fn open_job_files(
    spec: &JobSpec,
    roots: &PathRoots,
    first_fd: i32,
) -> Result<(JobSpec, Vec<OwnedFd>), PathError> {
    let mut out = spec.clone();
    let mut fds = Vec::new();
    let mut take = |path: &mut PathBuf, kind: RootKind, write: bool| {
        let fd = roots.open(kind, &path.to_string_lossy(), write)?;
        let n = first_fd + i32::try_from(fds.len()).unwrap_or(i32::MAX - first_fd);
        *path = PathBuf::from(format!("/proc/self/fd/{n}"));
        fds.push(fd);
        Ok::<(), PathError>(())
    };
    // A Linux guest's program boots files of the agent's own (see `runtime::linux`).
    if let Guest::Linux(l) = &mut out.guest
        && l.program.is_none()
    {
        take(&mut l.kernel, RootKind::Image, false)?;
        if let Some(r) = &mut l.rootfs {
            take(r, RootKind::Image, false)?;
        }
    }
    for d in &mut out.disks {
        take(&mut d.path, RootKind::Volume, !d.read_only)?;
    }
    Ok((out, fds))
}

/// `openat2(dir, rel, flags | O_CLOEXEC)` confined beneath `dir`, following no symlinks.
fn openat2(dir: &File, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    let rel = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is a plain C struct; all-zero is a valid value before the fields are set.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::try_from(flags | libc::O_CLOEXEC).unwrap_or(0);
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `dir` is an open directory descriptor, `rel` a NUL-terminated string and `how` a
    // valid open_how whose size is passed; the kernel returns a new descriptor we then own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path, devices: bool) -> PathRoots {
        PathRoots {
            images: vec![Root {
                dir: dir.join("images"),
                devices: false,
            }],
            volumes: vec![Root {
                dir: dir.join("volumes"),
                devices,
            }],
            operator_files: vec![dir.join("operator-kernel")],
        }
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("images/sub")).unwrap();
        std::fs::create_dir_all(d.path().join("volumes")).unwrap();
        std::fs::write(d.path().join("images/sub/vmlinux"), b"elf").unwrap();
        std::fs::write(d.path().join("volumes/disk.img"), b"disk").unwrap();
        std::fs::write(d.path().join("secret"), b"shadow").unwrap();
        std::fs::write(d.path().join("operator-kernel"), b"elf").unwrap();
        d
    }

    fn s(p: PathBuf) -> String {
        p.display().to_string()
    }

    #[test]
    fn files_beneath_their_roots_open_with_the_asked_access() {
        let d = setup();
        let r = roots(d.path(), false);
        let fd = r
            .open(
                RootKind::Volume,
                &s(d.path().join("volumes/disk.img")),
                true,
            )
            .unwrap();
        let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(fl & libc::O_ACCMODE, libc::O_RDWR);
        r.open(
            RootKind::Image,
            &s(d.path().join("images/sub/vmlinux")),
            false,
        )
        .unwrap();
        // The operator's own kernel, read-only only.
        r.open(RootKind::Image, &s(d.path().join("operator-kernel")), false)
            .unwrap();
        assert!(matches!(
            r.open(RootKind::Volume, &s(d.path().join("operator-kernel")), true),
            Err(PathError::OutsideRoots { .. })
        ));
    }

    #[test]
    fn escapes_are_refused() {
        let d = setup();
        let r = roots(d.path(), false);
        let vol = d.path().join("volumes");
        // `..`, a file outside every root, the wrong kind of root, a relative path.
        let e = r
            .open(
                RootKind::Volume,
                &format!("{}/../secret", vol.display()),
                true,
            )
            .unwrap_err();
        assert!(matches!(e, PathError::Malformed { .. }), "{e}");
        assert!(e.to_string().contains(&vol.display().to_string()), "{e}");
        let e = r
            .open(RootKind::Volume, &s(d.path().join("secret")), true)
            .unwrap_err();
        assert!(e.to_string().contains("offline.volume_roots"), "{e}");
        assert!(e.to_string().contains(&vol.display().to_string()), "{e}");
        let e = r
            .open(RootKind::Image, &s(vol.join("disk.img")), false)
            .unwrap_err();
        assert!(e.to_string().contains("offline.image_roots"), "{e}");
        assert!(matches!(
            r.open(RootKind::Volume, "volumes/disk.img", false),
            Err(PathError::Malformed { .. })
        ));
        // A symlink planted beneath a root, to a file outside it and to one inside it.
        std::os::unix::fs::symlink(d.path().join("secret"), vol.join("link")).unwrap();
        let e = r
            .open(RootKind::Volume, &s(vol.join("link")), true)
            .unwrap_err();
        assert!(e.to_string().contains("symlinks are not followed"), "{e}");
        std::os::unix::fs::symlink("disk.img", vol.join("inner")).unwrap();
        assert!(
            r.open(RootKind::Volume, &s(vol.join("inner")), true)
                .is_err()
        );
        // A symlinked directory on the way.
        std::os::unix::fs::symlink(d.path(), vol.join("up")).unwrap();
        assert!(
            r.open(RootKind::Volume, &s(vol.join("up/secret")), true)
                .is_err()
        );
        // The root itself.
        assert!(r.open(RootKind::Volume, &s(vol.clone()), true).is_err());
        // A missing file.
        let e = r
            .open(RootKind::Volume, &s(vol.join("nope")), true)
            .unwrap_err();
        assert!(matches!(e, PathError::Open { .. }), "{e}");
    }

    #[test]
    fn only_regular_files_and_allowed_devices() {
        let d = setup();
        let vol = d.path().join("volumes");
        std::fs::create_dir(vol.join("dir")).unwrap();
        nix::unistd::mkfifo(
            &vol.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let r = roots(d.path(), false);
        let e = r
            .open(RootKind::Volume, &s(vol.join("dir")), false)
            .unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        // A FIFO is refused without blocking on it.
        let e = r
            .open(RootKind::Volume, &s(vol.join("fifo")), false)
            .unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        // Devices: /dev as a root, with and without `devices`.
        let dev = PathRoots {
            volumes: vec![Root {
                dir: "/dev".into(),
                devices: false,
            }],
            ..Default::default()
        };
        let e = dev.open(RootKind::Volume, "/dev/null", false).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        if let Some(block) = std::fs::read_dir("/dev").ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| p.metadata().is_ok_and(|m| m.file_type().is_block_device()))
        }) {
            let e = dev
                .open(RootKind::Volume, &s(block.clone()), false)
                .unwrap_err();
            assert!(e.to_string().contains("does not allow devices"), "{e}");
            let allowed = PathRoots {
                volumes: vec![Root {
                    dir: "/dev".into(),
                    devices: true,
                }],
                ..Default::default()
            };
            allowed.open(RootKind::Volume, &s(block), false).unwrap();
        }
    }
}
