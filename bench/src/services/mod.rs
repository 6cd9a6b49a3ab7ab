//! The processes a benchmark run drives: nginx and PostgreSQL (online services), colo-agent with its VMs,
//! stress-ng (the control row), and the load generator.
//!
//! | file | process |
//! |---|---|
//! | `nginx.rs` | nginx, the online service |
//! | `agent.rs` | colo-agent and the VMs submitted to it |
//! | `stress.rs` | stress-ng, the control row |
//! | `postgres.rs` | PostgreSQL, the thesis benchmark's online service |
//! | `mod.rs` | the binaries' directory, colo-loadgen, small helpers |

mod agent;
mod nginx;
mod postgres;
mod stress;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::{BenchCgroup, HostError, spawn_in};

pub use agent::{Agent, AgentSetup, BURN_UNITS, ContainerSpec, VmSpec};
pub use nginx::Nginx;
pub use postgres::{PG_BIN, Postgres};
pub use stress::StressNg;

/// Where the binaries are (`colo-agent`, `coloctl`, `colo-vmm`, `colo-loadgen`).
#[derive(Debug, Clone)]
pub struct Bins {
    /// The directory.
    pub dir: PathBuf,
}

impl Bins {
    /// The directory of the running executable (cargo puts every binary of the workspace there).
    pub fn beside_me() -> Self {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        Self { dir }
    }

    /// A binary's path; fails naming the build command when it is missing.
    pub fn get(&self, name: &str) -> Result<PathBuf, HostError> {
        let p = self.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(HostError::Missing(format!(
                "{} not found: build it (cargo build --release -p colo-agent -p coloctl -p colo-vmm -p colo-bench)",
                p.display()
            )))
        }
    }
}

/// Waits until `addr` accepts a TCP connection.
pub fn wait_port(addr: SocketAddr, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Finds a program on PATH (and in /usr/sbin, where Debian puts nginx).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Runs colo-loadgen in `cg` and returns its JSON report.
#[allow(clippy::too_many_arguments)]
pub fn loadgen(
    bins: &Bins,
    cg: &BenchCgroup,
    addr: SocketAddr,
    path: &str,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    extra: &[String],
) -> Result<(Child, PathBuf), HostError> {
    let out = std::env::temp_dir().join(format!("colo-bench-loadgen-{}.json", std::process::id()));
    let f = std::fs::File::create(&out).map_err(|source| HostError::Io {
        op: "create",
        path: out.clone(),
        source,
    })?;
    let mut cmd = Command::new(bins.get("colo-loadgen")?);
    cmd.arg("--addr")
        .arg(addr.to_string())
        .arg("--path")
        .arg(path)
        .arg("--rate")
        .arg(rate.to_string())
        .arg("--duration")
        .arg(duration.as_secs_f64().to_string())
        .arg("--warmup")
        .arg(warmup.as_secs_f64().to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(Stdio::inherit());
    let child = spawn_in(&mut cmd, &cg.procs_files())?;
    Ok((child, out))
}

/// Writes `text` to `path`, creating parents.
pub fn write_file(path: &Path, text: &str) -> Result<(), HostError> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|source| HostError::Io {
            op: "mkdir",
            path: p.to_path_buf(),
            source,
        })?;
    }
    let mut f = std::fs::File::create(path).map_err(|source| HostError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    })?;
    f.write_all(text.as_bytes())
        .map_err(|source| HostError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        })
}

/// Creates a sparse file of `mib` MiB (+16 MiB) for a VM's disk, keeping one that exists.
pub fn sparse_disk(path: &Path, mib: u64) -> Result<(), HostError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| HostError::Io {
            op: "create",
            path: path.to_path_buf(),
            source,
        })?;
    f.set_len((mib + 16) << 20).map_err(|source| HostError::Io {
        op: "truncate",
        path: path.to_path_buf(),
        source,
    })
}
