//! Before a container job launches: its image and volumes resolved beneath the operator's roots,
//! its bundle written, and the monitor's command line.

use std::path::Path;

use colo_config::job::Program;
use colo_oci::bundle::{self, BindMount, BundleSpec};

use super::monitor::MonitorArgs;
use super::{ContainerHost, bundle_dir, container_id};
use crate::host::cgroup::{JobCgroup, ThreadGroup};
use crate::jobs::paths::{Accept, PathRoots, RootKind};
use crate::jobs::registry::JobPaths;
use crate::jobs::runtime::Prepared;

/// The `PATH` a container gets unless its job sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The open-files limit of a container's processes.
const OPEN_FILES: u64 = 1024;

/// The directories a root filesystem must hold for the default mounts.
const MOUNT_POINTS: &[&str] = &["/proc", "/dev", "/sys"];

/// Resolves `p`'s image and volumes, writes the bundle and returns the monitor's launch.
pub fn prepare(
    host: &ContainerHost,
    job: &str,
    p: &Program,
    paths: &JobPaths,
    roots: &PathRoots,
    cgroup: &JobCgroup,
    log_limit: u64,
) -> Result<Prepared, String> {
    let image = roots
        .resolve(
            RootKind::Image,
            &p.image.to_string_lossy(),
            false,
            Accept::DirOrFile,
        )
        .map_err(|e| format!("spec.container.image: {e}"))?;
    if !image.is_dir {
        return Err(format!(
            "spec.container.image: {} is an image file; unpacking OCI layouts and docker save \
             tarballs needs the node's image store",
            image.path.display()
        ));
    }
    let rootfs = image.path.clone();
    let mut wanted: Vec<&str> = MOUNT_POINTS.to_vec();
    if host.scratch_bytes > 0 {
        wanted.push("/tmp");
    }
    wanted.extend(p.volumes.iter().map(|v| v.target.as_str()));
    check_mount_points(&rootfs, &wanted)?;
    let mut mounts = Vec::with_capacity(p.volumes.len());
    let mut hold = vec![image.fd];
    for (i, v) in p.volumes.iter().enumerate() {
        let r = roots
            .resolve(
                RootKind::Volume,
                &v.source.to_string_lossy(),
                !v.read_only,
                Accept::Dir,
            )
            .map_err(|e| format!("spec.container.volumes[{i}].source: {e}"))?;
        mounts.push(BindMount {
            source: r.path,
            target: v.target.clone(),
            read_only: v.read_only,
        });
        hold.push(r.fd);
    }
    let mut env: Vec<String> = Vec::with_capacity(p.env.len() + 1);
    if !p.env.contains_key("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env.extend(p.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut args = vec![p.command.clone()];
    args.extend(p.args.iter().cloned());
    let user = p.user.unwrap_or_default();
    let spec = BundleSpec {
        hostname: job.to_string(),
        rootfs,
        args,
        env,
        cwd: if p.workdir.is_empty() {
            "/".into()
        } else {
            p.workdir.clone()
        },
        uid: user.uid,
        gid: user.gid,
        mounts,
        scratch_bytes: host.scratch_bytes,
        cgroups_path: cgroup.runtime_path(ThreadGroup::Vcpu),
        host_network: host.host_network,
        seccomp: host.seccomp.clone(),
        capabilities: bundle::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect(),
        open_files: OPEN_FILES,
    };
    let dir = bundle_dir(paths);
    bundle::write(&dir, &spec).map_err(|e| e.to_string())?;
    let monitor = MonitorArgs {
        runtime: host.runtime.binary().to_path_buf(),
        root: host.runtime.root().to_path_buf(),
        id: container_id(job),
        bundle: dir,
        console: paths.serial.clone(),
        log_limit,
        exit_record: paths.exit_record.clone(),
        oom_counter: cgroup.oom_counter(),
        sched_idle: false,
    };
    Ok(Prepared {
        program: host.monitor.clone(),
        args: monitor.to_args(),
        inherit: Vec::new(),
        hold,
    })
}

/// Refuses a root filesystem that lacks a directory a mount needs: a directory image is used
/// in place, read-only, and the runtime must not create mount points in it.
fn check_mount_points(rootfs: &Path, targets: &[&str]) -> Result<(), String> {
    for t in targets {
        let dir = rootfs.join(t.trim_start_matches('/'));
        if !dir.is_dir() {
            return Err(format!(
                "the image {} has no directory {t}, where the container mounts {}; create it in \
                 the image (a directory image is used read-only, as it is)",
                rootfs.display(),
                match *t {
                    "/proc" | "/dev" | "/sys" => "a kernel file system",
                    "/tmp" => "its scratch space",
                    _ => "a volume",
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_mount_point_is_named_with_its_fix() {
        let d = tempfile::tempdir().unwrap();
        for m in ["proc", "dev", "sys"] {
            std::fs::create_dir(d.path().join(m)).unwrap();
        }
        assert!(check_mount_points(d.path(), &["/proc", "/dev", "/sys"]).is_ok());
        let e = check_mount_points(d.path(), &["/proc", "/in"]).unwrap_err();
        assert!(
            e.contains("no directory /in") && e.contains("a volume"),
            "{e}"
        );
    }
}
