//! A program's process from its job and its image's configuration: shared by the container
//! sandbox and Linux guests.

use std::path::Path;

use colo_config::job::Program;

use crate::jobs::paths::{Accept, PathRoots, Resolved, RootKind};

/// The program's image, checked beneath the operator's image roots (`field` names it in the
/// error).
pub fn resolve_image(roots: &PathRoots, p: &Program, field: &str) -> Result<Resolved, String> {
    roots
        .resolve(
            RootKind::Image,
            &p.image.to_string_lossy(),
            false,
            Accept::DirOrFile,
        )
        .map_err(|e| format!("{field}.image: {e}"))
}

/// The digests of the stored images live jobs run, each named by `<job dir>/<file>` (so that
/// a store never removes one to make room).
pub fn live_digests(jobs_dir: &Path, file: &Path) -> Vec<String> {
    std::fs::read_dir(jobs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join(file)).ok())
        .map(|d| d.trim().to_string())
        .collect()
}

/// The open-files limit of a program's processes (`RLIMIT_NOFILE`, soft and hard).
pub const OPEN_FILES: u64 = 1024;

/// The `PATH` a program gets unless its job sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process a program runs as (in a container, or by a Linux guest's in-guest agent): what
/// the job says, the image's configuration filling what it leaves out.
#[derive(Debug, PartialEq, Eq)]
pub struct Process {
    /// `argv`, the program first.
    pub args: Vec<String>,
    /// The whole environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

/// The job's command and arguments, else the image's entrypoint and command; the image's
/// environment with the job's entries over it (and a `PATH` when neither sets one); the job's
/// working directory and user, else the image's.
pub fn process(
    field: &str,
    p: &Program,
    root: &colo_oci::image::RootFs,
) -> Result<Process, String> {
    let image = &root.defaults;
    let args = image.argv(&p.command, &p.args);
    if args.is_empty() {
        return Err(format!(
            "{field}.command: the job names no command and its image configuration has no Entrypoint or Cmd; give the job a command"
        ));
    }
    let mut env: Vec<String> = image
        .env
        .iter()
        .filter(|e| {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            !p.env.contains_key(key)
        })
        .cloned()
        .collect();
    env.extend(p.env.iter().map(|(k, v)| format!("{k}={v}")));
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    let cwd = [&p.workdir, &image.workdir]
        .into_iter()
        .find(|w| !w.is_empty())
        .map_or_else(|| "/".to_string(), Clone::clone);
    let (uid, gid) = match p.user {
        Some(u) => (u.uid, u.gid),
        None => image
            .user_ids(&root.path)
            .map_err(|e| format!("{field}.image: {e}"))?
            .unwrap_or((0, 0)),
    };
    Ok(Process {
        args,
        env,
        cwd,
        uid,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_configuration_fills_what_the_job_leaves_out() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "app:x:1001:1002::/:/bin/sh\n",
        )
        .unwrap();
        let rootfs = colo_oci::image::RootFs {
            path: root.path().to_path_buf(),
            digest: Some("sha256:aa".into()),
            defaults: colo_oci::image::ImageDefaults {
                env: vec!["PATH=/app/bin".into(), "MODE=image".into(), "KEEP=1".into()],
                entrypoint: vec!["/app/run".into()],
                cmd: vec!["--default".into()],
                workdir: "/app".into(),
                user: "app".into(),
            },
        };
        let mut p = Program {
            image: "/img".into(),
            ..Default::default()
        };
        p.env.insert("MODE".into(), "job".into());
        let got = process("spec.container", &p, &rootfs).unwrap();
        assert_eq!(
            got,
            Process {
                args: vec!["/app/run".into(), "--default".into()],
                env: vec!["PATH=/app/bin".into(), "KEEP=1".into(), "MODE=job".into()],
                cwd: "/app".into(),
                uid: 1001,
                gid: 1002,
            }
        );
        // What the job gives wins.
        let p = Program {
            image: "/img".into(),
            command: "/bin/true".into(),
            workdir: "/w".into(),
            user: Some(colo_config::job::User { uid: 5, gid: 6 }),
            ..Default::default()
        };
        let got = process("spec.container", &p, &rootfs).unwrap();
        assert_eq!(
            (got.args, got.cwd, got.uid, got.gid),
            (vec!["/bin/true".to_string()], "/w".to_string(), 5, 6)
        );
        // A directory image has no configuration: the job must name its command.
        let plain = colo_oci::image::RootFs {
            defaults: Default::default(),
            ..rootfs
        };
        let e = process("spec.container", &Program::default(), &plain).unwrap_err();
        assert!(
            e.contains("names no command") && e.contains("give the job a command"),
            "{e}"
        );
        let got = process(
            "spec.container",
            &Program {
                command: "sh".into(),
                ..Default::default()
            },
            &plain,
        )
        .unwrap();
        assert_eq!(got.env, vec![format!("PATH={DEFAULT_PATH}")]);
        assert_eq!((got.cwd.as_str(), got.uid), ("/", 0));
    }
}
