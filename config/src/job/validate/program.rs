//! The rules of a program a real sandbox runs (a container's today): bounded command line and
//! environment, paths inside the sandbox that cannot climb out, and host directories the node
//! lets a client name.

use super::{FieldError, PathAccess, PathKind, bad, check_dir, truncate};

/// Most arguments of a program.
pub const MAX_ARGS: usize = 256;
/// Most environment variables of a program.
pub const MAX_ENV: usize = 128;
/// Most volumes of a job.
pub const MAX_VOLUMES: usize = 16;
/// Most bytes of a program's command, arguments and environment together.
pub const MAX_PROGRAM_BYTES: usize = 128 * 1024;

/// Checks one string a program receives: no NUL byte, at most 4096 bytes.
fn check_arg(field: &str, s: &str) -> Result<(), FieldError> {
    if s.contains('\0') {
        return Err(bad(field, "must not hold a NUL byte"));
    }
    if s.len() > 4096 {
        return Err(bad(
            field,
            format!("must be at most 4096 bytes, got {}", s.len()),
        ));
    }
    Ok(())
}

/// Checks a path inside a sandbox: absolute, no `..`, no NUL, at most 1024 bytes.
fn check_inner_path(field: &str, p: &str) -> Result<(), FieldError> {
    check_arg(field, p)?;
    if p.len() > 1024 {
        return Err(bad(
            field,
            format!("must be at most 1024 bytes, got {}", p.len()),
        ));
    }
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(bad(
            field,
            format!(
                "must be an absolute path without `..`, got {:?}",
                truncate(p)
            ),
        ));
    }
    Ok(())
}

/// Checks a program: its image and volumes may be named, its command line and environment are
/// bounded, its volume targets are distinct absolute paths outside the kernel's file systems.
pub(super) fn check_program(
    prefix: &str,
    p: &crate::job::Program,
    access: &impl PathAccess,
) -> Result<(), FieldError> {
    check_dir(
        access,
        PathKind::Image,
        &format!("{prefix}.image"),
        &p.image,
        false,
        "a root filesystem directory, an OCI image layout or a docker save tarball",
    )?;
    let command = format!("{prefix}.command");
    // An empty command takes the image's Entrypoint and Cmd (checked when the image is read);
    // a plain directory has no configuration to take them from.
    if p.command.is_empty() {
        if access.is_plain_root(&p.image) {
            return Err(bad(
                &command,
                "is required for a directory image (a plain root filesystem has no image configuration to take Entrypoint and Cmd from)",
            ));
        }
    } else {
        check_arg(&command, &p.command)?;
    }
    if p.args.len() > MAX_ARGS {
        return Err(bad(
            &format!("{prefix}.args"),
            format!("at most {MAX_ARGS} arguments, got {}", p.args.len()),
        ));
    }
    let mut total = p.command.len();
    for (i, a) in p.args.iter().enumerate() {
        check_arg(&format!("{prefix}.args[{i}]"), a)?;
        total += a.len();
    }
    if p.env.len() > MAX_ENV {
        return Err(bad(
            &format!("{prefix}.env"),
            format!("at most {MAX_ENV} variables, got {}", p.env.len()),
        ));
    }
    for (k, v) in &p.env {
        let field = format!("{prefix}.env[{:?}]", truncate(k));
        let mut chars = k.chars();
        let ok = k.len() <= 256
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(bad(
                &field,
                "names must be 1..=256 characters of [A-Za-z0-9_], not starting with a digit",
            ));
        }
        check_arg(&field, v)?;
        total += k.len() + v.len();
    }
    if total > MAX_PROGRAM_BYTES {
        return Err(bad(
            prefix,
            format!(
                "command, arguments and environment must hold at most {MAX_PROGRAM_BYTES} bytes, got {total}"
            ),
        ));
    }
    if !p.workdir.is_empty() {
        check_inner_path(&format!("{prefix}.workdir"), &p.workdir)?;
    }
    if p.volumes.len() > MAX_VOLUMES {
        return Err(bad(
            &format!("{prefix}.volumes"),
            format!("at most {MAX_VOLUMES} volumes, got {}", p.volumes.len()),
        ));
    }
    for (i, v) in p.volumes.iter().enumerate() {
        let field = format!("{prefix}.volumes[{i}]");
        check_dir(
            access,
            PathKind::Volume,
            &format!("{field}.source"),
            &v.source,
            !v.read_only,
            "a host directory",
        )?;
        let target = format!("{field}.target");
        check_inner_path(&target, &v.target)?;
        let norm = v.target.trim_end_matches('/');
        let reserved = ["", "/proc", "/sys", "/dev", "/tmp"];
        if reserved
            .iter()
            .any(|r| norm == *r || (!r.is_empty() && norm.starts_with(&format!("{r}/"))))
        {
            return Err(bad(
                &target,
                format!(
                    "must not be / nor lie at or under /tmp (the job's scratch directory), /proc, /sys or /dev, got {:?}",
                    truncate(&v.target)
                ),
            ));
        }
        if p.volumes[..i]
            .iter()
            .any(|o| o.target.trim_end_matches('/') == norm)
        {
            return Err(bad(
                &target,
                format!("{:?} is mounted twice", truncate(norm)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::job::validate::SpecLimits;
    use crate::job::{DiskSpec, Program, Volume};
    use crate::job::{Guest, JobSpec};

    #[derive(Debug, Default)]
    struct Anywhere;
    impl PathAccess for Anywhere {
        fn check(&self, _: PathKind, _: &Path, _: bool) -> Result<(), String> {
            Ok(())
        }
    }

    fn container(p: Program) -> Result<JobSpec, FieldError> {
        JobSpec::new("k", Guest::Container(p)).validate(&SpecLimits::<Anywhere>::default())
    }

    fn sh() -> Program {
        Program {
            image: "/img/bb".into(),
            command: "sh".into(),
            args: vec!["-c".into(), "exit 7".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_program_passes() {
        assert!(container(sh()).is_ok());
    }

    #[test]
    fn a_linux_guests_program_takes_the_nodes_kernel_and_read_only_volumes_only() {
        let linux = |p: Program| {
            JobSpec::new("k", Guest::Linux(crate::job::LinuxGuest::program(p)))
                .validate(&SpecLimits::<Anywhere>::default())
        };
        let mut p = sh();
        p.volumes
            .push(crate::job::Volume::parse("/d/in:/in:ro").unwrap());
        assert!(linux(p.clone()).is_ok(), "no kernel named: the node's");
        p.volumes
            .push(crate::job::Volume::parse("/d/out:/out").unwrap());
        let e = linux(p).unwrap_err();
        assert_eq!(e.field, "spec.linux.program.volumes[1]", "{e}");
        assert!(e.to_string().contains("read_only"), "{e}");
        let mut g = crate::job::LinuxGuest::program(sh());
        g.rootfs = Some("/img/root.img".into());
        let e = JobSpec::new("k", Guest::Linux(g))
            .validate(&SpecLimits::<Anywhere>::default())
            .unwrap_err();
        assert_eq!(e.field, "spec.linux.rootfs_path", "{e}");
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(Program, &str)> = vec![
            (
                Program {
                    image: "".into(),
                    ..sh()
                },
                "spec.container.image",
            ),
            (
                Program {
                    command: "a\0b".into(),
                    ..sh()
                },
                "spec.container.command",
            ),
            (
                Program {
                    args: vec!["a\0b".into()],
                    ..sh()
                },
                "spec.container.args[0]",
            ),
            (
                Program {
                    args: vec![String::new(); MAX_ARGS + 1],
                    ..sh()
                },
                "spec.container.args",
            ),
            (
                Program {
                    env: [("1X".to_string(), "v".to_string())].into(),
                    ..sh()
                },
                "spec.container.env[\"1X\"]",
            ),
            (
                Program {
                    args: vec!["x".repeat(4000); 40],
                    ..sh()
                },
                "spec.container",
            ),
            (
                Program {
                    workdir: "rel".into(),
                    ..sh()
                },
                "spec.container.workdir",
            ),
            (
                Program {
                    volumes: vec![Volume::parse("/d:/proc/x").unwrap()],
                    ..sh()
                },
                "spec.container.volumes[0].target",
            ),
            (
                Program {
                    volumes: vec![Volume::parse("/d:/a/../etc").unwrap()],
                    ..sh()
                },
                "spec.container.volumes[0].target",
            ),
            (
                Program {
                    volumes: vec![
                        Volume::parse("/d:/in").unwrap(),
                        Volume::parse("/e:/in/:ro").unwrap(),
                    ],
                    ..sh()
                },
                "spec.container.volumes[1].target",
            ),
        ];
        for (p, field) in cases {
            let e = container(p).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        // No command: the image configuration's Entrypoint and Cmd run (checked at start).
        container(Program {
            command: String::new(),
            ..sh()
        })
        .unwrap();
        let scratch = Program {
            volumes: vec![Volume::parse("/d:/tmp/x").unwrap()],
            ..sh()
        };
        let e = container(scratch).unwrap_err();
        assert!(
            e.rule.starts_with("must not be / nor lie at or under /tmp"),
            "{e}"
        );
        let mut s = JobSpec::new("k", Guest::Container(sh()));
        s.disks.push(DiskSpec {
            path: "/d.img".into(),
            ..Default::default()
        });
        let e = s.validate(&SpecLimits::<Anywhere>::default()).unwrap_err();
        assert_eq!(e.field, "spec.disks");
    }

    #[test]
    fn volumes_parse_from_the_command_line() {
        assert_eq!(
            Volume::parse("/a:/b:ro").unwrap(),
            Volume {
                source: "/a".into(),
                target: "/b".into(),
                read_only: true
            }
        );
        assert!(!Volume::parse("/a:/b").unwrap().read_only);
        assert!(Volume::parse("/a").is_err());
        assert!(Volume::parse("/a:/b:rx").is_err());
        assert!(Volume::parse(":/b").is_err());
    }
}
