//! nginx, the online service: one worker serving one small file, in the online cgroup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{wait_port, which};
use crate::host::{BenchCgroup, HostError, signal, spawn_in};

/// nginx with one worker serving one small file, in the online cgroup.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// Address it listens on.
    pub addr: SocketAddr,
    /// The file it serves.
    pub path: String,
    /// Its working directory (logs, root).
    pub dir: PathBuf,
}

impl Nginx {
    /// Writes the configuration and a `size`-byte file under `dir` and starts nginx in `cg`.
    pub fn start(dir: &Path, port: u16, size: usize, cg: &BenchCgroup) -> Result<Self, HostError> {
        let www = dir.join("www");
        let logs = dir.join("logs");
        for d in [&www, &logs] {
            std::fs::create_dir_all(d).map_err(|source| HostError::Io {
                op: "mkdir",
                path: d.clone(),
                source,
            })?;
        }
        let body: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(www.join("index.html"), body).map_err(|source| HostError::Io {
            op: "write",
            path: www.clone(),
            source,
        })?;
        // Workers run as the bench's own user (root), not nginx's default `nobody`: an `--out`
        // made by `mktemp -d` (mode 0700) or a tight umask would keep `nobody` out of the
        // document root, and every request would fail.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {logs}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log {logs}/access.log;\n  keepalive_requests 100000000;\n  keepalive_timeout 600s;\n\
             server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    root {www};\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            logs = logs.display(),
            www = www.display(),
        );
        let cpath = dir.join("nginx.conf");
        std::fs::write(&cpath, conf).map_err(|source| HostError::Io {
            op: "write",
            path: cpath.clone(),
            source,
        })?;
        let nginx = which("nginx").ok_or_else(|| {
            HostError::Missing(
                "nginx not found: apt-get install nginx-light (scripts/install-deps.sh)".into(),
            )
        })?;
        let mut cmd = Command::new(nginx);
        cmd.arg("-c")
            .arg(&cpath)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_in(&mut cmd, &cg.procs_files())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !wait_port(addr, Duration::from_secs(10)) {
            return Err(HostError::Missing(format!(
                "nginx did not listen on {addr}; see {}/error.log",
                logs.display()
            )));
        }
        Ok(Self {
            child,
            addr,
            path: "/index.html".into(),
            dir: dir.to_path_buf(),
        })
    }

    /// nginx's error log (kept for the whole benchmark; [`Nginx::error_log_since`] reads a run's
    /// part).
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("logs/error.log")
    }

    /// The error log's length now, to read what a run adds.
    pub fn error_log_len(&self) -> u64 {
        std::fs::metadata(self.error_log()).map_or(0, |m| m.len())
    }

    /// What the error log gained since it was `offset` bytes long.
    pub fn error_log_since(&self, offset: u64) -> String {
        let Ok(bytes) = std::fs::read(self.error_log()) else {
            return String::new();
        };
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// Truncates the access log (it grows by ~100 bytes per request).
    pub fn rotate_log(&self) {
        let _ = std::fs::write(self.dir.join("logs/access.log"), "");
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid"))
            && let Ok(p) = pid.trim().parse()
        {
            signal(p, libc::SIGUSR1);
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGQUIT);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
