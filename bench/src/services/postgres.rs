//! PostgreSQL as an online service: a cluster of its own in a scratch directory (initdb, fsync
//! on, a unix socket in that directory, no TCP), run as the unprivileged `postgres` user inside
//! the bench's online cgroup, and `pgbench -i` to fill it. Dropping it stops the server
//! (fast shutdown, then SIGKILL) and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::which;
use crate::host::{BenchCgroup, HostError, signal, spawn_in};

/// Where Debian installs PostgreSQL 15's server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The port number names the socket file (`.s.PGSQL.<port>`); nothing listens on TCP.
const PORT: u16 = 5439;

/// A running PostgreSQL server with its own cluster.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    /// The cluster's directory (data and socket), removed on drop.
    pub dir: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HostError + 'a {
    move |source| HostError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The uid and gid of `name` from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

/// `cmd` run as `user` through `setpriv` (which execs, so the server is the process started in
/// the cgroup); as the caller when no unprivileged user exists.
fn as_user(user: Option<(u32, u32)>, prog: &Path) -> Command {
    match user {
        Some((uid, gid)) => {
            let mut c = Command::new(which("setpriv").unwrap_or_else(|| "setpriv".into()));
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(prog);
            c
        }
        None => Command::new(prog),
    }
}

impl Postgres {
    /// Whether PostgreSQL 15 and pgbench are installed (the message says how to get them).
    pub fn available() -> Result<(), HostError> {
        if !Path::new(PG_BIN).join("postgres").is_file() || which("pgbench").is_none() {
            return Err(HostError::Missing(format!(
                "PostgreSQL 15 not found ({PG_BIN}/postgres and pgbench on PATH): apt-get install postgresql-15 postgresql-client-15"
            )));
        }
        Ok(())
    }

    /// Makes a cluster in `dir` (emptied first), starts the server in `cg` and waits until it
    /// answers.
    pub fn start(dir: &Path, cg: &BenchCgroup) -> Result<Self, HostError> {
        Self::available()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(io("mkdir", dir))?;
        // PostgreSQL refuses to run as root; the `postgres` user of the Debian package owns it.
        let user = user_ids("postgres");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io("chown", dir))?;
        }
        let data = dir.join("data");
        let out = as_user(user, &Path::new(PG_BIN).join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["--auth=trust", "-U", "postgres", "--no-instructions"])
            .stdin(Stdio::null())
            .output()
            .map_err(io("spawn", Path::new("initdb")))?;
        if !out.status.success() {
            return Err(HostError::Missing(format!(
                "initdb -D {} failed ({}): {}",
                data.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let log = std::fs::File::create(dir.join("postgres.log"))
            .map_err(io("create", &dir.join("postgres.log")))?;
        if let Some((uid, gid)) = user {
            let _ = std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid));
        }
        let mut cmd = as_user(user, &Path::new(PG_BIN).join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir)
            .args(["-p", &PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "shared_buffers=128MB", "-c", "max_connections=50"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("dup", dir))?)
            .stderr(log);
        let child = spawn_in(&mut cmd, &cg.procs_files())?;
        let pg = Self {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if pg.dir.join(format!(".s.PGSQL.{PORT}")).exists() && pg.psql("select 1").is_ok() {
                return Ok(pg);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HostError::Missing(format!(
            "PostgreSQL did not answer within 30 s; see {}/postgres.log",
            pg.dir.display()
        )))
    }

    /// The arguments that connect a client (`-h DIR -p PORT -U postgres`).
    pub fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.dir.display().to_string(),
            "-p".into(),
            PORT.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    fn psql(&self, sql: &str) -> Result<(), HostError> {
        let psql = which("psql").ok_or_else(|| HostError::Missing("psql not found".into()))?;
        let st = Command::new(psql)
            .args(self.conn_args())
            .args(["-d", "postgres", "-qAtc", sql])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(io("spawn", Path::new("psql")))?;
        if st.success() {
            Ok(())
        } else {
            Err(HostError::Missing(format!("psql {sql:?}: {st}")))
        }
    }

    /// `pgbench -i -s <scale>` (in `cg`, as the load will run).
    pub fn init_pgbench(&self, scale: u32, cg: &BenchCgroup) -> Result<(), HostError> {
        let pgbench = which("pgbench").ok_or_else(|| HostError::Missing("pgbench".into()))?;
        let mut cmd = Command::new(pgbench);
        cmd.arg("-i")
            .args(["-s", &scale.to_string(), "-q"])
            .args(self.conn_args())
            .arg("postgres")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = spawn_in(&mut cmd, &cg.procs_files())?;
        let out = child
            .wait_with_output()
            .map_err(io("wait", Path::new("pgbench")))?;
        if !out.status.success() {
            return Err(HostError::Missing(format!(
                "pgbench -i -s {scale} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // A checkpoint now, so the first run does not pay for the load's dirty pages.
        self.psql("checkpoint")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: fast shutdown (backends end, a checkpoint is written).
            signal(child.id(), libc::SIGINT);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                // SIGQUIT: immediate shutdown, the postmaster takes its children with it.
                signal(child.id(), libc::SIGQUIT);
                std::thread::sleep(Duration::from_secs(2));
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_user_is_read_from_passwd_when_present() {
        // root is always uid 0; an unknown name is None rather than a panic.
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-colo"), None);
    }
}
