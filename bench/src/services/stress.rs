//! stress-ng, the control row's hog: the same work as plain processes instead of MicroVMs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::which;
use crate::host::{BenchCgroup, HostError, signal, spawn_in};

/// stress-ng as the control row's hog, in a cgroup, SCHED_IDLE like colo's VMs.
#[derive(Debug)]
pub struct StressNg {
    child: Child,
    yaml: PathBuf,
}

impl StressNg {
    /// Starts `stress-ng <args> --metrics-brief --yaml FILE` under `chrt --idle 0` in `cg`.
    pub fn start(args: &[String], dir: &Path, cg: &BenchCgroup) -> Result<Self, HostError> {
        let stress = which("stress-ng").ok_or_else(|| {
            HostError::Missing(
                "stress-ng not found: apt-get install stress-ng (scripts/install-deps.sh)".into(),
            )
        })?;
        let yaml = dir.join("stress.yaml");
        let _ = std::fs::remove_file(&yaml);
        let mut cmd = Command::new(which("chrt").unwrap_or_else(|| PathBuf::from("chrt")));
        cmd.args(["--idle", "0"])
            .arg(stress)
            .args(args)
            .arg("--metrics-brief")
            .arg("--yaml")
            .arg(&yaml)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_in(&mut cmd, &cg.procs_files())?;
        Ok(Self { child, yaml })
    }

    /// Stops it and returns its bogo-ops per second (summed over stressors).
    pub fn stop(mut self) -> f64 {
        signal(self.child.id(), libc::SIGINT);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.yaml).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("bogo-ops-per-second-real-time:"))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum()
    }
}
