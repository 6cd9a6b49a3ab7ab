//! colo-scheduler as a child process: started with flags, its addresses read from its log, its
//! resident memory read from `/proc`, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `colo-scheduler` binary.
pub struct SchedulerProcess {
    child: Child,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// Lifts this process's soft limit on open files to `want` (children inherit it).
pub fn raise_open_files(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= want,
        "this test needs {want} open files; raise the hard limit (ulimit -Hn) above {hard}"
    );
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).expect("setrlimit");
    }
}

fn addr_after(line: &str, key: &str) -> Option<SocketAddr> {
    line.split(key)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl SchedulerProcess {
    /// Starts the binary with `args` (listening on ephemeral loopback ports unless `args` say
    /// otherwise) and waits until it serves.
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"));
        if !args.contains(&"--grpc-listen") {
            cmd.args(["--grpc-listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--http-listen") {
            cmd.args(["--http-listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start colo-scheduler");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let (grpc_addr, http_addr) = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("colo-scheduler ended before serving: {seen:#?}");
            };
            if let (Some(g), Some(h)) = (
                addr_after(&line, "grpc_addr="),
                addr_after(&line, "http_addr="),
            ) {
                seen.push(line);
                break (g, h);
            }
            seen.push(line);
        };
        let log = Arc::new(Mutex::new(seen));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            grpc_addr,
            http_addr,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/<pid>/status"))
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(Iterator::count)
            .unwrap_or(0)
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `limit` for a log line containing `text`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(text)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} within {limit:?}: {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
