//! Before a container job launches: its image and volumes resolved beneath the operator's roots,
//! its bundle written, and the monitor's command line.

use std::path::Path;

use colo_config::job::Program;
use colo_oci::bundle::{self, BindMount, BundleSpec};

use super::monitor::MonitorArgs;
use super::{Container, bundle_dir, container_id, mounts};
use crate::host::cgroup::{JobCgroup, ThreadGroup};
use crate::jobs::paths::{Accept, PathRoots, RootKind};
use crate::jobs::registry::JobPaths;
use crate::jobs::runtime::Prepared;
use crate::jobs::runtime::program::{
    OPEN_FILES, live_digests, process as program_process, resolve_image,
};

/// The file in a live job's bundle naming the stored image it runs (so that the store never
/// removes it to make room).
const DIGEST_FILE: &str = "image.digest";

/// Resolves `p`'s image and volumes, writes the bundle and returns the monitor's launch.
pub fn prepare(
    c: &Container,
    job: &str,
    p: &Program,
    paths: &JobPaths,
    roots: &PathRoots,
    cgroup: &JobCgroup,
) -> Result<Prepared, String> {
    let host = c.host().map_err(|e| e.to_string())?;
    let image = resolve_image(roots, p, "spec.container")?;
    // A directory is used in place; an OCI layout or a docker save tarball is unpacked once
    // into the store (the images of live jobs are never removed to make room).
    let jobs_dir = paths.dir.parent().unwrap_or(&paths.dir);
    let in_use = live_digests(jobs_dir, &Path::new("bundle").join(DIGEST_FILE));
    let in_use: Vec<&str> = in_use.iter().map(String::as_str).collect();
    let mut root = host
        .images
        .resolve(&image.path, &in_use)
        .map_err(|e| format!("spec.container.image: {e}"))?;
    // The runtime mounts by path: it gets mounts of what was checked, in a directory of the
    // agent's (see `mounts`), never a path beneath a root. A start retried stages afresh.
    mounts::unstage(&paths.mounts)
        .map_err(|e| format!("cannot clear {}: {e}", paths.mounts.display()))?;
    if root.digest.is_none() {
        // A directory image used in place.
        let at = paths.mounts.join("rootfs");
        mounts::stage(&image.pinned, &at).map_err(|e| format!("spec.container.image: {e}"))?;
        root.path = at;
        let targets: Vec<&str> = p.volumes.iter().map(|v| v.target.as_str()).collect();
        colo_oci::image::check_mount_points(&root.path, &targets)
            .map_err(|e| format!("spec.container.image: {e}"))?;
    }
    let rootfs = root.path.clone();
    let mut mounts = Vec::with_capacity(p.volumes.len());
    for (i, v) in p.volumes.iter().enumerate() {
        let r = roots
            .resolve(
                RootKind::Volume,
                &v.source.to_string_lossy(),
                !v.read_only,
                Accept::Dir,
            )
            .map_err(|e| format!("spec.container.volumes[{i}].source: {e}"))?;
        let at = paths.mounts.join(format!("volume-{i}"));
        mounts::stage(&r.pinned, &at)
            .map_err(|e| format!("spec.container.volumes[{i}].source: {e}"))?;
        mounts.push(BindMount {
            source: at,
            target: v.target.clone(),
            read_only: v.read_only,
        });
    }
    let process = program_process("spec.container", p, &root)?;
    let spec = BundleSpec {
        hostname: job.to_string(),
        rootfs,
        args: process.args,
        env: process.env,
        cwd: process.cwd,
        uid: process.uid,
        gid: process.gid,
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
        // The monitor shields itself from the OOM killer, and the runtime it starts inherits
        // that: the container gets the score the monitor was born with (the agent's) back.
        oom_score_adj: Some(own_oom_score_adj()),
    };
    let dir = bundle_dir(paths);
    bundle::write(&dir, &spec).map_err(|e| e.to_string())?;
    if let Some(d) = &root.digest {
        std::fs::write(dir.join(DIGEST_FILE), d)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(DIGEST_FILE).display()))?;
    }
    let monitor = MonitorArgs {
        runtime: host.runtime.binary().to_path_buf(),
        root: host.runtime.root().to_path_buf(),
        id: container_id(job),
        bundle: dir,
        console: paths.serial.clone(),
        log_limit: c.log_limit(),
        exit_record: paths.exit_record.clone(),
        oom_counter: cgroup.oom_counter(),
        create_timeout: c.create_timeout(),
        mounts: Some(paths.mounts.clone()),
    };
    Ok(Prepared {
        program: host.monitor.clone(),
        args: monitor.to_args(),
        inherit: Vec::new(),
    })
}

/// This process's `oom_score_adj` (0 where it cannot be read).
fn own_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_jobs_name_their_stored_images() {
        let d = tempfile::tempdir().unwrap();
        for (job, digest) in [("j-1", Some("sha256:aa\n")), ("j-2", None)] {
            let b = d.path().join(job).join("bundle");
            std::fs::create_dir_all(&b).unwrap();
            if let Some(x) = digest {
                std::fs::write(b.join(DIGEST_FILE), x).unwrap();
            }
        }
        let file = Path::new("bundle").join(DIGEST_FILE);
        assert_eq!(live_digests(d.path(), &file), vec!["sha256:aa".to_string()]);
        assert!(live_digests(&d.path().join("none"), &file).is_empty());
    }
}
