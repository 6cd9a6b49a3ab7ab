//! The job registry: one directory per job under `<state_dir>/jobs/<id>/`, its record in
//! `job.json` written atomically (temporary file, fsync, rename, fsync of the directory), so
//! that a crash at any moment leaves either the old or the new record, never a torn one.
//!
//!
//! A save that fails leaves nothing behind: its `job.json.tmp` is removed, and so is the job's
//! directory when that save created it. A full state directory is named as such
//! ([`RegistryError::Full`]).
//!
//! ```text
//! <state_dir>/jobs/<id>/job.json      the record (spec, state, VMM pid + start time, outcome)
//! <state_dir>/jobs/<id>/serial.log    the guest's serial console (.1: its older half, once
//!                                     it reached half of offline.log_limit)
//! <state_dir>/jobs/<id>/vmm.log       the VMM's log (--log; .1 likewise)
//! <state_dir>/jobs/<id>/vmm.out       the VMM's stdout and stderr
//! <state_dir>/jobs/<id>/control.sock  the VMM's control socket (while it runs)
//! <state_dir>/jobs/<id>/exit.json     the VMM's exit record (until the agent absorbs it)
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::jobs::model::JobRecord;

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file operation failed.
    #[error("registry: {op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state directory has no space (or quota) left.
    #[error(
        "the state directory {dir} is full ({what}): cannot {op} {path}; free space there or \
         move offline.state_dir"
    )]
    Full {
        /// The state directory.
        dir: PathBuf,
        /// `No space left on device` or `Disk quota exceeded`.
        what: &'static str,
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A record could not be encoded.
    #[error("registry: cannot encode the record of job {id}: {source}")]
    Encode {
        /// The job.
        id: String,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io {
        op,
        path: path.into(),
        source,
    }
}

impl RegistryError {
    /// Names a full state directory `dir` as such; other errors pass unchanged.
    fn full_in(self, dir: &Path) -> Self {
        let what = match &self {
            Self::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) => "No space left on device",
                Some(libc::EDQUOT) => "Disk quota exceeded",
                _ => return self,
            },
            _ => return self,
        };
        match self {
            Self::Io { op, path, .. } => Self::Full {
                dir: dir.into(),
                what,
                op,
                path,
            },
            other => other,
        }
    }

    /// Whether the state directory is full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }
}

/// The files of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPaths {
    /// `<state_dir>/jobs/<id>`: the agent's (the record, the VMM's output).
    pub dir: PathBuf,
    /// `job.json`.
    pub record: PathBuf,
    /// `sandbox/`: the sandbox's own directory, owned by a jailed VMM's uid (the only place
    /// it can write).
    pub sandbox: PathBuf,
    /// `sandbox/serial.log`.
    pub serial: PathBuf,
    /// `sandbox/vmm.log`.
    pub log: PathBuf,
    /// `vmm.out`.
    pub output: PathBuf,
    /// `sandbox/control.sock`.
    pub control: PathBuf,
    /// `sandbox/exit.json`.
    pub exit_record: PathBuf,
    /// `<state_dir>/mounts/<id>`: a container's volumes and in-place image, mounted from what
    /// the agent checked (outside the job's directory, which is removed recursively).
    pub mounts: PathBuf,
    /// `sandbox/channel.sock`: a Linux guest's channel to its in-guest agent.
    pub channel: PathBuf,
    /// `guest/`: the agent's side of a Linux guest's program (its output, how it ended).
    pub guest: PathBuf,
}

/// A record the registry could not read; it was moved aside to `job.json.corrupt`.
#[derive(Debug)]
pub struct LoadProblem {
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    pub error: String,
}

/// The registry under `<state_dir>/jobs`.
#[derive(Debug, Clone)]
pub struct Registry {
    jobs: PathBuf,
}

impl Registry {
    /// Opens (creating if needed) the registry in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, RegistryError> {
        let jobs = state_dir.join("jobs");
        fs::create_dir_all(&jobs).map_err(io("create", &jobs))?;
        Ok(Self { jobs })
    }

    /// The files of job `id`.
    pub fn paths(&self, id: &str) -> JobPaths {
        let dir = self.jobs.join(id);
        // A job an earlier agent version started keeps its files beside its record.
        let sandbox = dir.join("sandbox");
        let sandbox = if !sandbox.exists() && dir.join("serial.log").exists() {
            dir.clone()
        } else {
            sandbox
        };
        JobPaths {
            record: dir.join("job.json"),
            serial: sandbox.join("serial.log"),
            log: sandbox.join("vmm.log"),
            output: dir.join("vmm.out"),
            control: sandbox.join("control.sock"),
            exit_record: sandbox.join("exit.json"),
            mounts: self.state_dir().join("mounts").join(id),
            channel: sandbox.join("channel.sock"),
            guest: dir.join("guest"),
            sandbox,
            dir,
        }
    }

    /// True when job `id` has a directory (ids are never reused).
    pub fn exists(&self, id: &str) -> bool {
        self.jobs.join(id).exists()
    }

    /// Writes `record` atomically and durably (fsync of the file and the directory), creating
    /// the job's directory if needed.
    pub fn save(&self, record: &JobRecord) -> Result<(), RegistryError> {
        self.save_with(record, true)
    }

    /// Writes `record` atomically; `durable: false` skips the fsyncs, for changes an agent
    /// restart can recover without the record (the VMM's pid is also in the job's cgroup, a
    /// Running state is re-derived from the VMM). On failure nothing is left behind: no
    /// temporary file, and no directory if this save created it.
    pub fn save_with(&self, record: &JobRecord, durable: bool) -> Result<(), RegistryError> {
        let p = self.paths(&record.id);
        let created = !p.dir.exists();
        let r = self.write_record(&p, record, durable);
        if r.is_err() {
            let _ = fs::remove_file(p.dir.join("job.json.tmp"));
            if created {
                let _ = fs::remove_dir_all(&p.dir);
            }
        }
        r.map_err(|e| e.full_in(self.state_dir()))
    }

    /// The state directory (the parent of `jobs/`).
    pub fn state_dir(&self) -> &Path {
        self.jobs.parent().unwrap_or(&self.jobs)
    }

    fn write_record(
        &self,
        p: &JobPaths,
        record: &JobRecord,
        durable: bool,
    ) -> Result<(), RegistryError> {
        fs::create_dir_all(&p.dir).map_err(io("create", &p.dir))?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| RegistryError::Encode {
            id: record.id.clone(),
            source,
        })?;
        let tmp = p.dir.join("job.json.tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(&bytes).map_err(io("write", &tmp))?;
            if durable {
                f.sync_all().map_err(io("fsync", &tmp))?;
            }
        }
        fs::rename(&tmp, &p.record).map_err(io("rename", &p.record))?;
        if durable {
            let d = fs::File::open(&p.dir).map_err(io("open", &p.dir))?;
            d.sync_all().map_err(io("fsync", &p.dir))?;
        }
        Ok(())
    }

    /// Reads every record. Unreadable ones are moved aside (`job.json.corrupt`) and reported,
    /// never silently dropped; directories without a record (a crash before the first save)
    /// are removed.
    pub fn load_all(&self) -> (Vec<JobRecord>, Vec<LoadProblem>) {
        let mut records = Vec::new();
        let mut problems = Vec::new();
        let Ok(entries) = fs::read_dir(&self.jobs) else {
            return (records, problems);
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let path = dir.join("job.json");
            let text = match fs::read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !dir.join("job.json.corrupt").exists() {
                        let _ = fs::remove_dir_all(&dir);
                    }
                    continue;
                }
                Err(e) => {
                    problems.push(LoadProblem {
                        path,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            match serde_json::from_slice::<JobRecord>(&text) {
                Ok(r) if Some(r.id.as_str()) == dir.file_name().and_then(|n| n.to_str()) => {
                    records.push(r)
                }
                Ok(r) => problems.push(LoadProblem {
                    path: path.clone(),
                    error: format!("record names job {:?}, not its directory", r.id),
                }),
                Err(e) => {
                    let aside = dir.join("job.json.corrupt");
                    let _ = fs::rename(&path, &aside);
                    problems.push(LoadProblem {
                        path,
                        error: format!("{e} (moved to {})", aside.display()),
                    });
                }
            }
        }
        records.sort_by(|a, b| {
            a.created_unix_ms
                .cmp(&b.created_unix_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        (records, problems)
    }

    /// Removes job `id`'s directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<(), RegistryError> {
        let dir = self.jobs.join(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::{Guest, JobSpec, JobState, WorkloadGuest};

    fn record(id: &str, t: i64) -> JobRecord {
        JobRecord::new(
            id.into(),
            JobSpec {
                vcpus: 1,
                memory_mib: 32,
                ..JobSpec::new(
                    format!("key-{id}"),
                    Guest::Workload(WorkloadGuest::default()),
                )
            },
            t,
        )
    }

    #[test]
    fn saves_loads_and_sets_corrupt_records_aside() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let mut a = record("a", 2);
        reg.save(&a).unwrap();
        a.state = JobState::Starting;
        reg.save(&a).unwrap();
        reg.save(&record("b", 1)).unwrap();
        fs::create_dir_all(dir.path().join("jobs/c")).unwrap();
        fs::write(dir.path().join("jobs/c/job.json"), b"{ torn").unwrap();
        fs::create_dir_all(dir.path().join("jobs/empty")).unwrap();

        let (records, problems) = reg.load_all();
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["b", "a"]);
        assert_eq!(records[1].state, JobState::Starting);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].error.contains("moved to"), "{:?}", problems[0]);
        assert!(dir.path().join("jobs/c/job.json.corrupt").exists());
        assert!(!dir.path().join("jobs/empty").exists());
        assert!(!dir.path().join("jobs/a/job.json.tmp").exists());

        reg.remove("a").unwrap();
        reg.remove("a").unwrap();
        assert!(!reg.exists("a"));
        assert_eq!(
            reg.paths("b").control,
            dir.path().join("jobs/b/sandbox/control.sock")
        );
        // A job an earlier version started keeps its sandbox files beside its record.
        fs::write(dir.path().join("jobs/b/serial.log"), b"old").unwrap();
        let old = reg.paths("b");
        assert_eq!(old.sandbox, dir.path().join("jobs/b"));
        assert_eq!(old.control, dir.path().join("jobs/b/control.sock"));
        fs::create_dir(dir.path().join("jobs/b/sandbox")).unwrap();
        assert_eq!(
            reg.paths("b").serial,
            dir.path().join("jobs/b/sandbox/serial.log")
        );
    }

    #[test]
    fn a_failed_save_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let a = record("a", 1);
        reg.save(&a).unwrap();
        // A directory in the record's place makes the rename fail.
        fs::remove_file(dir.path().join("jobs/a/job.json")).unwrap();
        fs::create_dir_all(dir.path().join("jobs/a/job.json/x")).unwrap();
        let e = reg.save(&a).unwrap_err();
        assert!(!e.is_full(), "{e}");
        assert!(!dir.path().join("jobs/a/job.json.tmp").exists());
    }

    #[test]
    fn a_full_disk_names_the_state_directory() {
        let e = io("write", Path::new("/s/jobs/j/job.json.tmp"))(
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        )
        .full_in(Path::new("/s"));
        assert!(e.is_full());
        assert_eq!(
            e.to_string(),
            "the state directory /s is full (No space left on device): cannot write \
             /s/jobs/j/job.json.tmp; free space there or move offline.state_dir"
        );
        let other = io("write", Path::new("/x"))(std::io::Error::from_raw_os_error(libc::EIO))
            .full_in(Path::new("/s"));
        assert!(!other.is_full());
    }
}
