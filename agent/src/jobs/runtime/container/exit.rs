//! The record a container's monitor leaves when the container has ended (`exit.json` in the
//! job's directory): how its init process ended and whether the job's cgroup saw an OOM kill.
//! Written atomically (a temporary file renamed), so a reader sees it whole or not at all.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerExit {
    /// The init process's exit code (128 + the signal when a signal killed it).
    pub exit_code: i32,
    /// The signal that killed the init process, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The job's memory cgroup killed a process for exceeding its limit while it ran.
    #[serde(default)]
    pub oom_killed: bool,
    /// The container never ran: the runtime failed to create or start it.
    #[serde(default)]
    pub failed_to_start: bool,
    /// What happened, for people (the runtime's error when it failed).
    #[serde(default)]
    pub message: String,
    /// When the monitor saw the end (Unix ms).
    pub ended_unix_ms: i64,
    /// The monitor's pid.
    pub monitor_pid: u32,
}

impl ContainerExit {
    /// Reads a record.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let text = colo_vmm::read_untrusted(path, colo_vmm::MAX_RECORD_BYTES)?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }

    /// Writes the record atomically (`path.tmp` renamed over `path`), synced to disk.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.json");
        let r = ContainerExit {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            failed_to_start: false,
            message: "m".into(),
            ended_unix_ms: 5,
            monitor_pid: 7,
        };
        r.write(&p).unwrap();
        assert_eq!(ContainerExit::read(&p).unwrap(), r);
        assert!(!d.path().join("exit.json.tmp").exists());
        std::fs::write(&p, "{").unwrap();
        assert!(ContainerExit::read(&p).is_err());
    }
}
