//! A job's sandbox in coloctl: `submit`'s `--sandbox` and the settings of each kind (applied
//! over a job file's sandbox section), and the one-line view `list`, `get` and `watch` show.
//!
//! The kind comes from `--sandbox`, else from the flags given (`--image` or a command after
//! `--` mean a container, `--kernel` a Linux guest, `--cpu-units` and the like the workload
//! guest), else from the job file, else it is the workload guest. Flags of two kinds, or of a
//! kind other than `--sandbox` names, are refused with both flags named.

use std::path::PathBuf;

use colo_config::job::{Guest, LinuxGuest, Program, SandboxKind, User, Volume, WorkloadGuest};
use colo_proto::agent as pb;

use super::CliError;

/// `coloctl submit`'s sandbox flags (they override the job file's sandbox section).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SandboxArgs {
    /// The sandbox: workload (colo's workload guest in a MicroVM), linux (a Linux guest in a
    /// MicroVM) or container (an OCI container). Default: the kind the other flags or the job
    /// file name, else workload.
    #[arg(long, value_name = "KIND")]
    pub sandbox: Option<String>,
    /// Workload guest: CPU work units.
    #[arg(long)]
    pub cpu_units: Option<u64>,
    /// Workload guest: MiB of memory to touch.
    #[arg(long)]
    pub mem_mib: Option<u64>,
    /// Workload guest: seconds to idle after the work.
    #[arg(long)]
    pub hold_seconds: Option<u64>,
    /// Workload guest: exit code (0..=63).
    #[arg(long)]
    pub exit_code: Option<i32>,
    /// Workload guest: disk IO, `read:MiB` or `write:MiB` (`:forever` repeats it until stopped).
    #[arg(long)]
    pub io: Option<String>,
    /// Workload guest: burn CPU on every vCPU until the job is stopped.
    #[arg(long)]
    pub cpu_forever: bool,
    /// Linux guest: kernel (uncompressed vmlinux with a PVH entry).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Linux guest: root filesystem image.
    #[arg(long)]
    pub rootfs: Option<String>,
    /// Linux guest: kernel command line.
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Container (or, with `--sandbox linux`, a Linux guest's program): the root filesystem, a
    /// directory, an OCI image layout or a `docker save` tarball beneath the node's
    /// `offline.image_roots`.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Container (or a Linux guest's program, read-only only): a host directory beneath the
    /// node's `offline.volume_roots`, mounted at DST (read-only with `:ro`); repeatable.
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// Container: an environment variable `KEY=VALUE` (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Container: the working directory inside the image (default `/`).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Container: the numeric user and group to run as, `UID:GID` (default 0:0).
    #[arg(long, value_name = "UID:GID")]
    pub user: Option<String>,
    /// Container: the program and its arguments, after `--`
    /// (`-- sort -o /out/s /in/f`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn local(msg: String) -> CliError {
    CliError::Local(msg)
}

impl SandboxArgs {
    /// The sandbox flags given, each with the kind it belongs to, in the order of `--help`.
    fn given(&self) -> Vec<(SandboxKind, &'static str)> {
        use SandboxKind::{Container, Linux, Workload};
        [
            (Workload, "--cpu-units", self.cpu_units.is_some()),
            (Workload, "--mem-mib", self.mem_mib.is_some()),
            (Workload, "--hold-seconds", self.hold_seconds.is_some()),
            (Workload, "--exit-code", self.exit_code.is_some()),
            (Workload, "--io", self.io.is_some()),
            (Workload, "--cpu-forever", self.cpu_forever),
            (Linux, "--kernel", self.kernel.is_some()),
            (Linux, "--rootfs", self.rootfs.is_some()),
            (Linux, "--cmdline", self.cmdline.is_some()),
            (Container, "--image", self.image.is_some()),
            (Container, "--volume", !self.volume.is_empty()),
            (Container, "--env", !self.env.is_empty()),
            (Container, "--workdir", self.workdir.is_some()),
            (Container, "--user", self.user.is_some()),
            (Container, "a command after --", !self.command.is_empty()),
        ]
        .into_iter()
        .filter_map(|(kind, flag, set)| set.then_some((kind, flag)))
        .collect()
    }

    /// The kind the flags ask for (`None`: they name none), or the two flags that disagree.
    pub fn kind(&self) -> Result<Option<SandboxKind>, CliError> {
        let mut first = match &self.sandbox {
            Some(name) => {
                let kind = SandboxKind::from_name(name).ok_or_else(|| {
                    local(format!(
                        "--sandbox {name:?}: must be workload, linux or container"
                    ))
                })?;
                Some((kind, format!("--sandbox {name}")))
            }
            None => None,
        };
        for (kind, flag) in self.given() {
            match &first {
                None => first = Some((kind, flag.to_string())),
                // A program's flags belong to a container, or (after `--sandbox linux` or
                // `--kernel`) to a Linux guest's program (whose volumes must be read-only).
                Some((SandboxKind::Linux, _)) if kind == SandboxKind::Container => {}
                Some((k, f)) if *k != kind => {
                    return Err(local(format!(
                        "{f} and {flag} ask for different sandboxes ({} and {}): give the \
                         settings of one",
                        k.name(),
                        kind.name()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(first.map(|(k, _)| k))
    }

    /// The job's sandbox: `from_file` (the job file's, or the workload guest's defaults) with
    /// these flags applied; a file's section of another kind is replaced.
    pub fn apply(&self, from_file: Guest) -> Result<Guest, CliError> {
        let Some(kind) = self.kind()? else {
            return Ok(from_file);
        };
        Ok(match kind {
            SandboxKind::Workload => {
                let mut w = match from_file {
                    Guest::Workload(w) => w,
                    _ => WorkloadGuest::default(),
                };
                self.apply_workload(&mut w);
                Guest::Workload(w)
            }
            SandboxKind::Linux => {
                let mut l = match from_file {
                    Guest::Linux(l) => l,
                    _ => LinuxGuest::default(),
                };
                if let Some(k) = &self.kernel {
                    l.kernel = k.into();
                }
                if let Some(r) = &self.rootfs {
                    l.rootfs = Some(r.into());
                }
                if let Some(c) = &self.cmdline {
                    l.cmdline = c.clone();
                }
                if self
                    .given()
                    .iter()
                    .any(|(k, _)| *k == SandboxKind::Container)
                {
                    let mut p = l.program.take().unwrap_or_default();
                    self.apply_program(&mut p)?;
                    l.program = Some(p);
                }
                Guest::Linux(l)
            }
            SandboxKind::Container => {
                let mut p = match from_file {
                    Guest::Container(p) => p,
                    _ => Program::default(),
                };
                self.apply_program(&mut p)?;
                Guest::Container(p)
            }
        })
    }

    fn apply_workload(&self, w: &mut WorkloadGuest) {
        if let Some(v) = self.cpu_units {
            w.cpu_units = v;
        }
        if let Some(v) = self.mem_mib {
            w.mem_mib = v;
        }
        if let Some(v) = self.hold_seconds {
            w.hold_seconds = v;
        }
        if let Some(v) = self.exit_code {
            w.exit_code = v;
        }
        if let Some(v) = &self.io {
            w.io = v.clone();
        }
        if self.cpu_forever {
            w.cpu_forever = true;
        }
    }

    /// Scalars replace the file's, the command replaces its command and arguments, `--env`
    /// sets variables over the file's, `--volume` adds to its volumes (as `--disk` does).
    fn apply_program(&self, p: &mut Program) -> Result<(), CliError> {
        if let Some(i) = &self.image {
            p.image = i.clone();
        }
        if let Some((command, args)) = self.command.split_first() {
            p.command = command.clone();
            p.args = args.to_vec();
        }
        for e in &self.env {
            let (k, v) = e
                .split_once('=')
                .ok_or_else(|| local(format!("--env {e:?}: expected KEY=VALUE")))?;
            p.env.insert(k.to_string(), v.to_string());
        }
        if let Some(w) = &self.workdir {
            p.workdir = w.clone();
        }
        if let Some(u) = &self.user {
            p.user = Some(parse_user(u)?);
        }
        for v in &self.volume {
            p.volumes
                .push(Volume::parse(v).map_err(|e| local(format!("--volume: {e}")))?);
        }
        Ok(())
    }
}

/// Parses `--user UID:GID`.
fn parse_user(s: &str) -> Result<User, CliError> {
    let bad = || {
        local(format!(
            "--user {s:?}: expected UID:GID, two numbers (1000:1000)"
        ))
    };
    let (uid, gid) = s.split_once(':').ok_or_else(bad)?;
    Ok(User {
        uid: uid.parse().map_err(|_| bad())?,
        gid: gid.parse().map_err(|_| bad())?,
    })
}

/// The kind of a wire spec's sandbox (`-` when it has none).
pub fn kind_name(spec: &pb::JobSpec) -> &'static str {
    match &spec.sandbox {
        Some(pb::job_spec::Sandbox::Workload(_)) => SandboxKind::Workload.name(),
        Some(pb::job_spec::Sandbox::Linux(_)) => SandboxKind::Linux.name(),
        Some(pb::job_spec::Sandbox::Container(_)) => SandboxKind::Container.name(),
        None => "-",
    }
}

/// One line for a job's sandbox: its kind and what it runs
/// (`container /img/bb: sh -c 'echo hi; exit 7'`).
pub fn summary(spec: &pb::JobSpec) -> String {
    match &spec.sandbox {
        Some(pb::job_spec::Sandbox::Workload(w)) => format!(
            "workload cpu_units={} mem_mib={} hold_seconds={} exit_code={}{}",
            if w.cpu_forever {
                "forever".to_string()
            } else {
                w.cpu_units.to_string()
            },
            w.mem_mib,
            w.hold_seconds,
            w.exit_code,
            if w.io.is_empty() {
                String::new()
            } else {
                format!(" io={}", w.io)
            }
        ),
        Some(pb::job_spec::Sandbox::Linux(l)) => match &l.program {
            Some(p) => format!(
                "linux image={} command={}",
                p.image,
                std::iter::once(&p.command)
                    .filter(|c| !c.is_empty())
                    .chain(&p.args)
                    .map(|w| quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => format!(
                "linux kernel={} rootfs={} cmdline={:?}",
                l.kernel_path, l.rootfs_path, l.cmdline
            ),
        },
        Some(pb::job_spec::Sandbox::Container(c)) => {
            let words: Vec<String> = std::iter::once(&c.command)
                .filter(|c| !c.is_empty())
                .chain(&c.args)
                .map(|w| quote(w))
                .collect();
            if c.command.is_empty() {
                format!(
                    "container {}: (the image's command) {}",
                    c.image,
                    words.join(" ")
                )
            } else {
                format!("container {}: {}", c.image, words.join(" "))
            }
        }
        None => "-".into(),
    }
}

/// `get`'s lines for a container's settings besides its image and command (`volume`, `env`,
/// `workdir`, `user`); none for the other kinds.
pub fn details(spec: &pb::JobSpec) -> Vec<(&'static str, String)> {
    let Some(pb::job_spec::Sandbox::Container(c)) = &spec.sandbox else {
        return Vec::new();
    };
    let mut lines = vec![("workdir", c.workdir.clone())];
    if let Some(u) = &c.user {
        lines.push(("user", format!("{}:{}", u.uid, u.gid)));
    }
    for v in &c.volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        lines.push(("volume", format!("{}:{}:{mode}", v.source, v.target)));
    }
    let mut env: Vec<_> = c.env.iter().collect();
    env.sort();
    for (k, v) in env {
        lines.push(("env", format!("{k}={}", quote(v))));
    }
    lines
}

/// A word as a POSIX shell reads it back: bare when it holds only safe characters, else in
/// single quotes.
fn quote(w: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !w.is_empty() && w.chars().all(safe) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: SandboxArgs,
    }

    fn args(a: &[&str]) -> SandboxArgs {
        T::try_parse_from(std::iter::once("x").chain(a.iter().copied()))
            .unwrap()
            .s
    }

    fn err(a: &[&str], from_file: Guest) -> String {
        args(a).apply(from_file).unwrap_err().to_string()
    }

    fn workload() -> Guest {
        Guest::Workload(WorkloadGuest::default())
    }

    #[test]
    fn the_documented_container_command_line() {
        let a = args(&[
            "--sandbox",
            "container",
            "--image",
            "/img/bb",
            "--volume",
            "/d/in:/in:ro",
            "--volume",
            "/d/out:/out",
            "--env",
            "LC_ALL=C",
            "--env",
            "EMPTY=",
            "--workdir",
            "/w",
            "--user",
            "1000:100",
            "--",
            "sort",
            "-o",
            "/out/s",
            "/in/f",
        ]);
        let Guest::Container(p) = a.apply(workload()).unwrap() else {
            panic!()
        };
        assert_eq!(p.image, PathBuf::from("/img/bb"));
        assert_eq!(p.command, "sort");
        assert_eq!(p.args, ["-o", "/out/s", "/in/f"]);
        assert_eq!(p.env["LC_ALL"], "C");
        assert_eq!(p.env["EMPTY"], "");
        assert_eq!(p.workdir, "/w");
        assert_eq!(
            p.user,
            Some(User {
                uid: 1000,
                gid: 100
            })
        );
        assert_eq!(
            p.volumes,
            [
                Volume::parse("/d/in:/in:ro").unwrap(),
                Volume::parse("/d/out:/out").unwrap()
            ]
        );
    }

    #[test]
    fn the_kind_follows_from_the_flags() {
        // An image or a command alone means a container; no flag keeps the file's sandbox.
        let image = args(&["--image", "/img/bb"]).apply(workload()).unwrap();
        assert!(matches!(image, Guest::Container(p) if p.command.is_empty()));
        let command = args(&["--", "sh", "-c", "exit 7"])
            .apply(workload())
            .unwrap();
        assert!(matches!(command, Guest::Container(p) if p.args == ["-c", "exit 7"]));
        let linux = Guest::Linux(LinuxGuest {
            kernel: "/k".into(),
            ..Default::default()
        });
        assert_eq!(args(&[]).apply(linux.clone()).unwrap(), linux);
        assert_eq!(args(&[]).kind().unwrap(), None);
        let w = args(&["--exit-code", "3"]).apply(linux).unwrap();
        assert_eq!(
            w,
            Guest::Workload(WorkloadGuest {
                exit_code: 3,
                ..Default::default()
            })
        );
        let l = args(&["--sandbox", "linux", "--kernel", "/k2"]).apply(workload());
        assert!(matches!(l.unwrap(), Guest::Linux(l) if l.kernel.as_os_str() == "/k2"));
        // After `--sandbox linux`, a program's flags make the Linux guest's program.
        let l = args(&[
            "--sandbox",
            "linux",
            "--image",
            "/img/a",
            "--",
            "sort",
            "-n",
        ])
        .apply(workload())
        .unwrap();
        let Guest::Linux(l) = l else { panic!("{l:?}") };
        let p = l.program.unwrap();
        assert_eq!(
            (p.image.to_str(), p.command.as_str()),
            (Some("/img/a"), "sort")
        );
        assert_eq!(p.args, ["-n"]);
        let e = args(&["--sandbox", "container", "--kernel", "/k"]).kind();
        assert!(e.is_err());
    }

    #[test]
    fn flags_override_the_files_container_field_by_field() {
        let file = Guest::Container(Program {
            image: "/img/a".into(),
            command: "sort".into(),
            args: vec!["/in/f".into()],
            env: [("A".to_string(), "1".to_string())].into(),
            workdir: "/w".into(),
            volumes: vec![Volume::parse("/d/in:/in:ro").unwrap()],
            ..Default::default()
        });
        let a = args(&["--env", "B=2", "--volume", "/d/out:/out", "--", "wc", "-l"]);
        let Guest::Container(p) = a.apply(file.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(p.image, PathBuf::from("/img/a"));
        assert_eq!(
            (p.command.as_str(), p.args.as_slice()),
            ("wc", &["-l".to_string()][..])
        );
        assert_eq!(p.env.len(), 2);
        assert_eq!(p.workdir, "/w");
        assert_eq!(p.volumes.len(), 2);
        // `--sandbox container` alone keeps the file's container as it is.
        assert_eq!(
            args(&["--sandbox", "container"])
                .apply(file.clone())
                .unwrap(),
            file
        );
    }

    #[test]
    fn conflicting_and_malformed_flags_are_refused_by_name() {
        let e = err(&["--sandbox", "workload", "--image", "/i"], workload());
        assert_eq!(
            e,
            "--sandbox workload and --image ask for different sandboxes (workload and \
             container): give the settings of one"
        );
        let e = err(&["--cpu-units", "5", "--", "true"], workload());
        assert!(
            e.starts_with("--cpu-units and a command after -- ask"),
            "{e}"
        );
        let e = err(&["--cpu-units", "5", "--kernel", "/k"], workload());
        assert!(e.starts_with("--cpu-units and --kernel ask"), "{e}");
        let e = err(&["--sandbox", "vm"], workload());
        assert_eq!(e, r#"--sandbox "vm": must be workload, linux or container"#);
        let e = err(&["--env", "NOVALUE"], workload());
        assert_eq!(e, r#"--env "NOVALUE": expected KEY=VALUE"#);
        let e = err(&["--user", "1000"], workload());
        assert!(e.starts_with(r#"--user "1000": expected UID:GID"#), "{e}");
        assert!(err(&["--user", "a:1"], workload()).starts_with("--user"));
        assert!(err(&["--user", "1:-1"], workload()).starts_with("--user"));
        let e = err(&["--volume", "/a:/b:rx"], workload());
        assert!(e.starts_with("--volume: `rx`"), "{e}");
        assert!(err(&["--volume", "/a"], workload()).contains("SRC:DST"));
        // A command is only what follows `--`.
        assert!(T::try_parse_from(["x", "sort"]).is_err());
    }

    #[test]
    fn the_views_show_kind_image_and_command() {
        let mut spec = pb::JobSpec::default();
        assert_eq!((kind_name(&spec), summary(&spec).as_str()), ("-", "-"));
        spec.sandbox = Some(pb::job_spec::Sandbox::Container(pb::ContainerJob {
            image: "/img/bb".into(),
            command: "sh".into(),
            args: vec![
                "-c".into(),
                "echo hi; exit 7".into(),
                "it's".into(),
                String::new(),
            ],
            env: [
                ("B".to_string(), "x y".to_string()),
                ("A".into(), "1".into()),
            ]
            .into(),
            user: Some(pb::ContainerUser { uid: 1, gid: 2 }),
            volumes: vec![pb::VolumeMount {
                source: "/d/in".into(),
                target: "/in".into(),
                read_only: true,
            }],
            ..Default::default()
        }));
        assert_eq!(kind_name(&spec), "container");
        assert_eq!(
            summary(&spec),
            r#"container /img/bb: sh -c 'echo hi; exit 7' 'it'\''s' ''"#
        );
        assert_eq!(
            details(&spec),
            [
                ("workdir", String::new()),
                ("user", "1:2".into()),
                ("volume", "/d/in:/in:ro".into()),
                ("env", "A=1".into()),
                ("env", "B='x y'".into()),
            ]
        );
        spec.sandbox = Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
            cpu_forever: true,
            ..Default::default()
        }));
        assert_eq!(kind_name(&spec), "workload");
        assert!(summary(&spec).starts_with("workload cpu_units=forever"));
        assert!(details(&spec).is_empty());
    }
}
