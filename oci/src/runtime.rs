//! The OCI runtime's command line (runc or crun), with its state kept under a root directory of
//! the caller's (`--root`), so that the runtime's default `/run/runc` (read-only under a strict
//! systemd unit) is never needed.
//!
//! Every call is bounded by a timeout: a runtime stuck on a frozen cgroup must not stall its
//! caller. The calls block; async callers run them on a blocking pool.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one runtime call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls of `pause` when the runtime could not freeze the container in time.
pub const PAUSE_ATTEMPTS: u32 = 5;
/// The wait between two such calls.
pub const PAUSE_RETRY_AFTER: Duration = Duration::from_millis(100);

/// The runtimes colo drives, in the order it looks for them.
pub const KNOWN_RUNTIMES: &[&str] = &["runc", "crun"];

/// Errors of the runtime's command line.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No runtime binary was found.
    #[error(
        "no OCI runtime found (looked for {looked}); install runc or crun (Debian: apt-get install runc), or set offline.container.runtime"
    )]
    NotFound {
        /// Where it looked.
        looked: String,
    },
    /// The runtime could not be run at all.
    #[error("cannot run {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it said on stderr (cut to 1 KiB).
        stderr: String,
    },
    /// The runtime did not answer in time (it was killed).
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// `state` printed something that is not the runtime spec's state.
    #[error("`{command}` printed an unreadable state: {error}")]
    BadState {
        /// The command line.
        command: String,
        /// The JSON error.
        error: String,
    },
}

/// The status of a container, as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, its process waiting for `start`.
    Created,
    /// Running.
    Running,
    /// Frozen.
    Paused,
    /// Its process has exited.
    Stopped,
    /// Something else (being created, or a status this code does not know).
    Other,
}

/// A container's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Its status.
    pub status: Status,
    /// Its init process on the host (0 once stopped).
    pub pid: u32,
}

/// An OCI runtime binary and the state root it keeps its containers under.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    binary: PathBuf,
    root: PathBuf,
    version: String,
}

impl OciRuntime {
    /// The runtime at `configured`, or the first of [`KNOWN_RUNTIMES`] on `PATH`; its state is
    /// kept under `root`. Runs `<binary> --version` to prove it works.
    pub fn detect(configured: Option<&Path>, root: &Path) -> Result<Self, RuntimeError> {
        let binary = match configured {
            Some(p) => p.to_path_buf(),
            None => find_on_path(KNOWN_RUNTIMES).ok_or_else(|| RuntimeError::NotFound {
                looked: format!("{} on PATH", KNOWN_RUNTIMES.join(", ")),
            })?,
        };
        if !binary.is_file() {
            return Err(RuntimeError::NotFound {
                looked: binary.display().to_string(),
            });
        }
        let mut rt = Self {
            binary,
            root: root.to_path_buf(),
            version: String::new(),
        };
        let out = rt.run_plain(&["--version"])?;
        // "runc version 1.1.5+ds1" / "crun version 1.8.1"
        rt.version = out
            .lines()
            .next()
            .unwrap_or("")
            .replace(" version ", " ")
            .trim()
            .to_string();
        Ok(rt)
    }

    /// The runtime at `binary` with its state under `root`, taken as it is (no `--version` run):
    /// for a process that was handed both by a caller who detected them.
    pub fn at(binary: &Path, root: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            root: root.to_path_buf(),
            version: String::new(),
        }
    }

    /// Name and version when detected, else the binary's file name (`runc`).
    pub fn version_or_name(&self) -> String {
        if self.version.is_empty() {
            self.binary.file_name().map_or_else(
                || self.binary.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        } else {
            self.version.clone()
        }
    }

    /// The binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The state root (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Name and version (`runc 1.1.5+ds1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The arguments of `<binary> --root R run --detach --bundle B --pid-file P ID`: creates
    /// and starts the container in one call of the runtime (runc and crun both take it), and
    /// returns once its process runs.
    pub fn run_detached_args(&self, id: &str, bundle: &Path, pid_file: &Path) -> Vec<OsString> {
        let mut a = self.base_args();
        a.extend([
            "run".into(),
            "--detach".into(),
            "--bundle".into(),
            bundle.into(),
        ]);
        a.extend(["--pid-file".into(), pid_file.into(), id.into()]);
        a
    }

    /// `state ID`; `None` when the runtime does not know the container.
    pub fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        let out = match self.run(&["state", id]) {
            Ok(out) => out,
            Err(RuntimeError::Failed { stderr, .. })
                if stderr.contains("does not exist") || stderr.contains("not exist") =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| RuntimeError::BadState {
                command: self.describe(&["state", id]),
                error: e.to_string(),
            })?;
        let status = match v["status"].as_str().unwrap_or("") {
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "stopped" => Status::Stopped,
            _ => Status::Other,
        };
        let pid = v["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        Ok(Some(ContainerState {
            status,
            pid: pid.unwrap_or(0),
        }))
    }

    /// `pause ID` (freezes every process of the container). runc gives the cgroup freezer a
    /// bounded time to reach FROZEN, then thaws again and fails with "unable to freeze"; on a
    /// busy host, freezing busy tasks can take longer, so that answer is retried, up to
    /// [`PAUSE_ATTEMPTS`] calls [`PAUSE_RETRY_AFTER`] apart. Any other failure is returned at once.
    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let mut attempt = 1;
        loop {
            match self.run(&["pause", id]) {
                Err(RuntimeError::Failed { stderr, .. })
                    if stderr.contains("unable to freeze") && attempt < PAUSE_ATTEMPTS =>
                {
                    attempt += 1;
                    std::thread::sleep(PAUSE_RETRY_AFTER);
                }
                r => return r.map(drop),
            }
        }
    }

    /// `resume ID`.
    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&["resume", id]).map(drop)
    }

    /// `kill ID SIGNAL` (to the container's init; in its own pid namespace, SIGKILL ends all).
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.run(&["kill", id, signal]).map(drop)
    }

    /// `delete --force ID`: removes the container's state and cgroups (killing what still
    /// runs). A container the runtime does not know is already deleted.
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        match self.run(&["delete", "--force", id]) {
            Err(RuntimeError::Failed { stderr, .. }) if stderr.contains("not exist") => Ok(()),
            r => r.map(drop),
        }
    }

    fn base_args(&self) -> Vec<OsString> {
        vec!["--root".into(), self.root.clone().into()]
    }

    fn describe(&self, args: &[&str]) -> String {
        format!(
            "{} --root {} {}",
            self.binary.display(),
            self.root.display(),
            args.join(" ")
        )
    }

    fn run(&self, args: &[&str]) -> Result<String, RuntimeError> {
        let mut all = self.base_args();
        all.extend(args.iter().map(OsString::from));
        run_bounded(&self.binary, &all, &self.describe(args))
    }

    fn run_plain(&self, args: &[&str]) -> Result<String, RuntimeError> {
        let all: Vec<OsString> = args.iter().map(OsString::from).collect();
        let what = format!("{} {}", self.binary.display(), args.join(" "));
        run_bounded(&self.binary, &all, &what)
    }
}

/// Runs `binary args` with no stdin, collects stdout and stderr, kills it after
/// [`CALL_TIMEOUT`].
fn run_bounded(binary: &Path, args: &[OsString], what: &str) -> Result<String, RuntimeError> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RuntimeError::Spawn {
            binary: binary.into(),
            source,
        })?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut polls = 0u32;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() >= CALL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RuntimeError::Timeout {
                    command: what.into(),
                    timeout: CALL_TIMEOUT,
                });
            }
            Ok(None) => {
                // A runtime call takes 5-50 ms: poll every millisecond for a while (a doubling
                // pause would oversleep the end by up to half the call), then back off.
                std::thread::sleep(pause);
                polls += 1;
                if polls > 200 {
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
            Err(source) => {
                return Err(RuntimeError::Spawn {
                    binary: binary.into(),
                    source,
                });
            }
        }
    }
    // The child has exited: its pipes hold at most what it wrote (a pipe's buffer), and reading
    // them cannot block for long.
    let out = child
        .wait_with_output()
        .map_err(|source| RuntimeError::Spawn {
            binary: binary.into(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.len() > 1024 {
        let mut cut = 1024;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
    }
    Err(RuntimeError::Failed {
        command: what.into(),
        status: out.status.to_string(),
        stderr,
    })
}

/// The first of `names` found as a file in a directory of `PATH` (plus the sbin directories a
/// service's `PATH` may lack).
pub fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(d.into());
        }
    }
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(OsStr::new(n))))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_runtime_names_the_fix() {
        let e = OciRuntime::detect(Some(Path::new("/nonexistent/runc")), Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/runc") && e.contains("install runc"),
            "{e}"
        );
    }

    /// A runtime that answers `pause` with "unable to freeze" `fails` times, then succeeds; it
    /// counts its calls in `calls`.
    fn freezing_runtime(dir: &Path, fails: u32, message: &str) -> OciRuntime {
        let script = dir.join("runtime");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho x >> {calls}\nn=$(wc -l < {calls})\nif [ \"$n\" -le {fails} ]; then echo 'level=error msg=\"{message}\"' >&2; exit 1; fi\n",
                calls = dir.join("calls").display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        OciRuntime {
            binary: script,
            root: dir.to_path_buf(),
            version: "fake".into(),
        }
    }

    fn calls(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("calls"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    #[test]
    fn pause_retries_a_freeze_that_did_not_finish_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let rt = freezing_runtime(dir.path(), 2, "unable to freeze");
        rt.pause("c").unwrap();
        assert_eq!(calls(dir.path()), 3);

        let dir = tempfile::tempdir().unwrap();
        let rt = freezing_runtime(dir.path(), u32::MAX, "unable to freeze");
        let e = rt.pause("c").unwrap_err().to_string();
        assert!(e.contains("unable to freeze"), "{e}");
        assert_eq!(calls(dir.path()), PAUSE_ATTEMPTS as usize);

        let dir = tempfile::tempdir().unwrap();
        let rt = freezing_runtime(dir.path(), 1, "container not running");
        let e = rt.pause("c").unwrap_err().to_string();
        assert!(e.contains("container not running"), "{e}");
        assert_eq!(calls(dir.path()), 1, "other failures are not retried");
    }

    #[test]
    fn a_failing_call_reports_its_stderr() {
        let e = run_bounded(
            Path::new("/bin/sh"),
            &["-c".into(), "echo broken >&2; exit 3".into()],
            "sh",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("broken") && e.contains("3"), "{e}");
        let ok = run_bounded(Path::new("/bin/sh"), &["-c".into(), "echo hi".into()], "sh");
        assert_eq!(ok.unwrap(), "hi\n");
    }

    #[test]
    fn run_detached_args_put_the_root_first() {
        let rt = OciRuntime {
            binary: "/usr/sbin/runc".into(),
            root: "/run/colo/runc".into(),
            version: String::new(),
        };
        let a: Vec<String> = rt
            .run_detached_args("j1", Path::new("/b"), Path::new("/b/pid"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a.join(" "),
            "--root /run/colo/runc run --detach --bundle /b --pid-file /b/pid j1"
        );
    }
}
