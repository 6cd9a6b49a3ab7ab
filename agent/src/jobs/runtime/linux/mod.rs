//! Linux guests that run a job's program, as Kata- and Firecracker-based runtimes do: the node's
//! guest kernel boots its guest image (an initramfs whose `/init` is colo's in-guest agent,
//! `colo-guest-init`); the job's image becomes a read-only ext4 disk ([`image`]) the in-guest
//! agent makes the program's root (under an overlay); the agent talks to it over a
//! virtio-console channel (`colo-vmm --channel`, [`session`]) and records how the program ended
//! ([`exit`]). The VMM, its cgroups and the QoS loop are those of any MicroVM job.
//!
//! A host whose VMM cannot run guest user space (KVM-PVM) refuses these jobs at submit, with
//! the cause ([`detect`]).

pub mod exit;
pub mod image;
pub mod session;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use colo_config::agent::{LinuxConfig, UserSpace};
use colo_config::job::{DiskSpec, Guest, LinuxGuest, Program};
use colo_guest_agent::{HostMessage, Resource, Rlimit, RootDisk, RunSpec, VolumeDisk, frame};

use crate::jobs::launch::FIRST_INHERITED_FD;
use crate::jobs::model::JobSpec;
use crate::jobs::paths::{Accept, PathRoots, RootKind, open_job_files};
use crate::jobs::registry::JobPaths;
use image::BlockImages;

/// The file in `guest/` naming the stored image a live job runs (so it is never removed).
const DIGEST_FILE: &str = "image.digest";
/// The guest device of the job's root (the first disk).
const ROOT_DEVICE: &str = "/dev/vda";

/// What this node runs Linux-guest programs with.
#[derive(Debug)]
pub struct LinuxHost {
    /// The operator said the VMM runs guest user space (`offline.linux.user_space: assume`).
    pub assumed: bool,
    kernel: PathBuf,
    initramfs: PathBuf,
    cmdline: String,
    images: BlockImages,
}

/// The node's Linux-guest programs, or why it cannot run them (and how to fix that).
pub type Availability = Result<Arc<LinuxHost>, String>;

/// Why this host's KVM cannot run guest user space, if it cannot.
fn user_space_blocked() -> Option<&'static str> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    (!hw && Path::new("/sys/module/kvm_pvm").exists()).then_some(
        "this host's KVM is KVM-PVM (no VMX/SVM): a Linux guest's kernel boots, but its user \
         space (the in-guest agent and the program) cannot run; run Linux jobs on a node with \
         hardware virtualization",
    )
}

/// Finds what the node needs for Linux-guest programs: a VMM that runs guest user space, the
/// guest kernel and image, `mkfs.ext4`, and the block image cache under `state_dir`.
pub fn detect(cfg: &LinuxConfig, default_kernel: &Path, state_dir: &Path) -> Availability {
    if cfg.user_space == UserSpace::Auto
        && let Some(why) = user_space_blocked()
    {
        return Err(why.into());
    }
    let kernel = cfg.kernel.clone().unwrap_or_else(|| default_kernel.into());
    for (what, path, key) in [
        ("guest kernel", &kernel, "offline.linux.kernel"),
        ("guest image", &cfg.initramfs, "offline.linux.initramfs"),
    ] {
        if !path.is_file() {
            return Err(format!(
                "the {what} {} is missing: install it or set {key} (scripts/build-guest-image.sh builds one)",
                path.display()
            ));
        }
    }
    if colo_oci::runtime::find_on_path(&["mkfs.ext4"]).is_none() {
        return Err("mkfs.ext4 is not on PATH: install e2fsprogs".into());
    }
    let images = BlockImages::open(&state_dir.join("guest-images"), cfg.image_cache.bytes())?;
    Ok(Arc::new(LinuxHost {
        assumed: cfg.user_space == UserSpace::Assume,
        kernel,
        initramfs: cfg.initramfs.clone(),
        cmdline: cfg.cmdline.clone(),
        images,
    }))
}

/// The program of a Linux-guest job, if it runs one.
pub fn program(spec: &JobSpec) -> Option<&Program> {
    match &spec.guest {
        Guest::Linux(LinuxGuest {
            program: Some(p), ..
        }) => Some(p),
        _ => None,
    }
}

/// A host name the guest accepts, from the job id.
fn hostname(id: &str) -> String {
    let h: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if h.is_empty() { "colo".into() } else { h }
}

/// Opens a file of the operator's (the guest kernel and image) for the VMM.
fn open_operator_file(path: &Path) -> Result<OwnedFd, String> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Prepares a Linux-guest program: its root disk from its image, the `Run` frame the guest will
/// get (kept in `guest/`), and the VMM's inherited files: the kernel, the guest image, the root
/// disk, then the job's disks. Returns the job spec as the VMM sees it (file paths naming the
/// descriptors), the descriptors and the extra VMM arguments.
pub fn prepare(
    host: &LinuxHost,
    id: &str,
    spec: &JobSpec,
    paths: &JobPaths,
    roots: &PathRoots,
) -> Result<(JobSpec, Vec<OwnedFd>, Vec<OsString>), String> {
    let Guest::Linux(l) = &spec.guest else {
        return Err("not a Linux guest".into());
    };
    let p = l
        .program
        .as_ref()
        .ok_or("a Linux guest without a program")?;
    std::fs::create_dir_all(&paths.guest)
        .map_err(|e| format!("cannot create {}: {e}", paths.guest.display()))?;
    let image = super::program::resolve_image(roots, p, "spec.linux.program")?;
    let jobs_dir = paths.dir.parent().unwrap_or(&paths.dir);
    let in_use = super::program::live_digests(jobs_dir, &Path::new("guest").join(DIGEST_FILE));
    let in_use: Vec<&str> = in_use.iter().map(String::as_str).collect();
    let root = host
        .images
        .root_for(&image, &paths.guest.join("root.ext4"), &in_use)
        .map_err(|e| format!("spec.linux.program.image: {e}"))?;
    if let Some(d) = &root.digest {
        std::fs::write(paths.guest.join(DIGEST_FILE), d)
            .map_err(|e| format!("cannot write {}: {e}", paths.guest.display()))?;
    }
    // Each (read-only) volume becomes a disk of its own after the root: /dev/vdb, ...
    let mut volumes = Vec::with_capacity(p.volumes.len());
    for (i, v) in p.volumes.iter().enumerate() {
        let field = format!("spec.linux.program.volumes[{i}].source");
        let dir = roots
            .resolve(
                RootKind::Volume,
                &v.source.to_string_lossy(),
                false,
                Accept::Dir,
            )
            .map_err(|e| format!("{field}: {e}"))?;
        let block = paths.guest.join(format!("volume-{i}.ext4"));
        image::make_ext4(&image::pinned_dir(&dir), &block).map_err(|e| format!("{field}: {e}"))?;
        let letter = char::from(b'b' + u8::try_from(i).unwrap_or(24));
        volumes.push((
            block,
            VolumeDisk {
                device: format!("/dev/vd{letter}"),
                fstype: "ext4".into(),
                target: v.target.clone(),
            },
        ));
    }
    let rootfs = colo_oci::image::RootFs {
        path: root.tree.clone().unwrap_or_default(),
        digest: root.digest.clone(),
        defaults: root.defaults.clone(),
    };
    let process = super::program::process("spec.linux.program", p, &rootfs)?;
    let path_var = process
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::program::DEFAULT_PATH);
    let mut argv = process.args.into_iter();
    let command = argv.next().unwrap_or_default();
    let run = RunSpec {
        path: image::find_command(&command, path_var, root.tree.as_deref())
            .map_err(|e| format!("spec.linux.program.command: {e}"))?,
        args: argv.collect(),
        env: process.env,
        workdir: process.cwd,
        uid: process.uid,
        gid: process.gid,
        // As a container's processes get.
        rlimits: vec![Rlimit {
            resource: Resource::Nofile,
            soft: super::program::OPEN_FILES,
            hard: super::program::OPEN_FILES,
        }],
        hostname: hostname(id),
        root: Some(RootDisk {
            device: ROOT_DEVICE.into(),
            fstype: "ext4".into(),
            volumes: volumes.iter().map(|(_, v)| v.clone()).collect(),
        }),
    };
    run.validate()
        .map_err(|e| format!("spec.linux.program: {e}"))?;
    std::fs::write(
        paths.guest.join(session::RUN_FILE),
        frame::to_bytes(&HostMessage::Run(run)),
    )
    .map_err(|e| format!("cannot write {}: {e}", paths.guest.display()))?;

    // What the VMM inherits, in order (fd 3, 4, ...): the kernel (the job's, beneath the image
    // roots, or the node's), the guest image, the root, the volumes, then the job's disks.
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut inherit = |fd: OwnedFd| {
        let n = FIRST_INHERITED_FD + i32::try_from(fds.len()).unwrap_or(i32::MAX);
        fds.push(fd);
        PathBuf::from(format!("/proc/self/fd/{n}"))
    };
    let kernel = inherit(if l.kernel.as_os_str().is_empty() {
        open_operator_file(&host.kernel)?
    } else {
        roots
            .open(RootKind::Image, &l.kernel.to_string_lossy(), false)
            .map_err(|e| format!("spec.linux.kernel_path: {e}"))?
    });
    let initramfs = inherit(open_operator_file(&host.initramfs)?);
    let rootfs = inherit(open_operator_file(&root.block)?);
    let mut volume_disks = Vec::with_capacity(volumes.len());
    for (block, _) in &volumes {
        volume_disks.push(DiskSpec {
            path: inherit(open_operator_file(block)?),
            read_only: true,
            ..DiskSpec::default()
        });
    }
    let next = FIRST_INHERITED_FD + i32::try_from(fds.len()).unwrap_or(i32::MAX);
    let (mut vm_spec, disks) =
        open_job_files(spec, roots, next).map_err(|e| format!("cannot open its files: {e}"))?;
    fds.extend(disks);
    vm_spec.disks.splice(0..0, volume_disks);
    if let Guest::Linux(vl) = &mut vm_spec.guest {
        vl.kernel = kernel;
        vl.rootfs = Some(rootfs);
        vl.cmdline = [host.cmdline.as_str(), l.cmdline.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
    let extra = vec![
        "--initrd".into(),
        initramfs.into(),
        "--channel".into(),
        paths.channel.clone().into(),
    ];
    Ok((vm_spec, fds, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_come_from_the_job_id() {
        assert_eq!(hostname("j-0a1b"), "j-0a1b");
        assert_eq!(hostname("a_b.c"), "a-b-c");
        assert_eq!(hostname(""), "colo");
        assert_eq!(hostname(&"x".repeat(100)).len(), 63);
    }
}
