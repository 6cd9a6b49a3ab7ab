//! Request and reply types of the control socket.

use serde::{Deserialize, Serialize};

use crate::exit::DroppedBytes;

/// Longest request line accepted; a client whose unfinished line grows past it is dropped.
pub const MAX_LINE: usize = 4096;

/// The complete lines taken from what a client has sent so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lines {
    /// Each complete line, trimmed (invalid UTF-8 replaced), in order; empty lines included.
    pub lines: Vec<String>,
    /// The unfinished rest is over [`MAX_LINE`] bytes: the client is to be dropped.
    pub overlong: bool,
}

/// Takes every complete (newline-ended) line out of `input`, leaving the unfinished rest. One
/// pass over the input however many lines it holds.
pub fn take_lines(input: &mut Vec<u8>) -> Lines {
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(n) = input[start..].iter().position(|b| *b == b'\n') {
        let line = &input[start..start + n];
        lines.push(String::from_utf8_lossy(line).trim().to_string());
        start += n + 1;
    }
    input.drain(..start);
    Lines {
        lines,
        overlong: input.len() > MAX_LINE,
    }
}

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// Stop every vCPU; the reply comes once all are stopped.
    Pause,
    /// Let paused vCPUs run again.
    Resume,
    /// Report [`Stats`].
    Stats,
    /// End the VM (exit status [`crate::EXIT_SHUTDOWN`]).
    Shutdown,
    /// Change a disk's token buckets while the VM runs (0 = unlimited).
    SetIoLimit {
        /// Disk index (as in `--disk` order) or its path.
        disk: String,
        /// Bandwidth limit, bytes per second.
        bw: u64,
        /// Operations per second.
        iops: u64,
    },
}

/// A request line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad control request `{line}`: {why} (requests: pause, resume, stats, shutdown, set_io_limit DISK bw=BYTES_PER_S iops=N)"
)]
pub struct RequestParseError {
    /// The offending line.
    pub line: String,
    /// What is wrong with it.
    pub why: String,
}

impl ControlRequest {
    /// Parses one request line (surrounding white space ignored).
    pub fn parse(line: &str) -> Result<Self, RequestParseError> {
        let err = |why: &str| RequestParseError {
            line: line.trim().to_string(),
            why: why.to_string(),
        };
        let mut words = line.split_whitespace();
        let verb = words.next().ok_or_else(|| err("empty line"))?;
        let req = match verb {
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            "stats" => Self::Stats,
            "shutdown" => Self::Shutdown,
            "set_io_limit" => {
                let disk = words.next().ok_or_else(|| err("missing DISK"))?.to_string();
                let (mut bw, mut iops) = (None, None);
                for w in words.by_ref() {
                    let (k, v) = w
                        .split_once('=')
                        .ok_or_else(|| err("expected bw=N or iops=N"))?;
                    let n: u64 = v
                        .parse()
                        .map_err(|_| err("bw and iops take a whole number"))?;
                    match k {
                        "bw" => bw = Some(n),
                        "iops" => iops = Some(n),
                        _ => return Err(err("expected bw=N or iops=N")),
                    }
                }
                if bw.is_none() && iops.is_none() {
                    return Err(err("give bw=N and/or iops=N"));
                }
                return Ok(Self::SetIoLimit {
                    disk,
                    bw: bw.unwrap_or(0),
                    iops: iops.unwrap_or(0),
                });
            }
            _ => return Err(err("unknown request")),
        };
        if words.next().is_some() {
            return Err(err("unexpected words after the request"));
        }
        Ok(req)
    }

    /// The request as one line (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Self::Pause => "pause".into(),
            Self::Resume => "resume".into(),
            Self::Stats => "stats".into(),
            Self::Shutdown => "shutdown".into(),
            Self::SetIoLimit { disk, bw, iops } => {
                format!("set_io_limit {disk} bw={bw} iops={iops}")
            }
        }
    }
}

/// Whether the vCPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// vCPUs run.
    Running,
    /// vCPUs are stopped by `pause`.
    Paused,
}

/// One vCPU thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuStats {
    /// vCPU index.
    pub index: u32,
    /// Thread id (`/proc/<pid>/task/<tid>`), thread name `colo-vcpu-<index>`.
    pub tid: u32,
    /// CPU time of the thread, nanoseconds (its CPU-time clock: the first field of its
    /// schedstat).
    pub cpu_ns: u64,
}

/// KVM exits handled by the VMM, summed over vCPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCounts {
    /// Port I/O exits.
    pub io: u64,
    /// MMIO exits.
    pub mmio: u64,
    /// HLT exits reaching the VMM (0 with the in-kernel irqchip, where KVM handles HLT).
    pub hlt: u64,
    /// Every other exit (signals, system events, ...).
    pub other: u64,
}

/// Guest memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Size of guest RAM.
    pub guest_bytes: u64,
    /// Guest RAM resident in host memory.
    pub resident_bytes: u64,
}

/// One disk (IO path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Index in `--disk` order.
    pub index: u32,
    /// Backing file.
    pub path: String,
    /// Bytes read by the guest.
    pub read_bytes: u64,
    /// Bytes written by the guest.
    pub write_bytes: u64,
    /// Requests completed.
    pub ops: u64,
    /// Bandwidth limit, bytes per second (0 = unlimited).
    pub bw: u64,
    /// Operations-per-second limit (0 = unlimited).
    pub iops: u64,
}

/// Reply to `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Running or paused.
    pub state: VmState,
    /// VMM process id.
    pub pid: u32,
    /// Milliseconds since the VMM started.
    pub uptime_ms: u64,
    /// vCPU threads.
    pub vcpus: Vec<VcpuStats>,
    /// Thread id of the IO thread (`colo-io`), if the VM has disks.
    pub io_tid: Option<u32>,
    /// Exit counts.
    pub exits: ExitCounts,
    /// Guest memory.
    pub memory: MemoryStats,
    /// Work units done by the workload guest (plus IO bytes in its IO mode); 0 for other guests.
    pub progress: u64,
    /// Disks.
    pub disks: Vec<DiskStats>,
    /// Output dropped so far to stay within `--log-limit`.
    #[serde(default)]
    pub dropped: DroppedBytes,
}

/// `{"ok":true}` plus the fields of `body` (an object), as one line without the newline.
pub fn ok_reply<T: Serialize>(body: Option<&T>) -> String {
    let mut value = body
        .and_then(|b| serde_json::to_value(b).ok())
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("ok".into(), serde_json::Value::Bool(true));
    }
    value.to_string()
}

/// `{"ok":false,"error":message}` as one line without the newline.
pub fn error_reply(message: &str) -> String {
    serde_json::json!({"ok": false, "error": message}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_whole_and_the_rest_waits() {
        let mut input = b"pause\n\n  stats \r\nshut".to_vec();
        let got = take_lines(&mut input);
        assert_eq!(got.lines, ["pause", "", "stats"]);
        assert!(!got.overlong);
        assert_eq!(input, b"shut");
        input.extend_from_slice(b"down\n");
        assert_eq!(take_lines(&mut input).lines, ["shutdown"]);
        assert!(input.is_empty());
        let mut long = vec![b'x'; MAX_LINE + 1];
        assert!(take_lines(&mut long).overlong);
        let mut bad = b"p\xffause\n".to_vec();
        assert_eq!(take_lines(&mut bad).lines, ["p\u{fffd}ause"]);
    }

    #[test]
    fn requests_round_trip() {
        for req in [
            ControlRequest::Pause,
            ControlRequest::Resume,
            ControlRequest::Stats,
            ControlRequest::Shutdown,
            ControlRequest::SetIoLimit {
                disk: "0".into(),
                bw: 8 << 20,
                iops: 0,
            },
        ] {
            assert_eq!(ControlRequest::parse(&req.to_line()).unwrap(), req);
        }
        assert_eq!(
            ControlRequest::parse("  set_io_limit /d.img iops=50\n").unwrap(),
            ControlRequest::SetIoLimit {
                disk: "/d.img".into(),
                bw: 0,
                iops: 50
            }
        );
    }

    #[test]
    fn bad_requests_say_why() {
        for (line, why) in [
            ("", "empty"),
            ("fly", "unknown request"),
            ("pause now", "unexpected"),
            ("set_io_limit", "missing DISK"),
            ("set_io_limit 0", "bw=N and/or"),
            ("set_io_limit 0 bw=x", "whole number"),
            ("set_io_limit 0 speed=1", "expected bw"),
        ] {
            let e = ControlRequest::parse(line).unwrap_err().to_string();
            assert!(e.contains(why), "{line:?}: {e}");
        }
    }

    #[test]
    fn replies_are_flat_json_objects() {
        let stats = Stats {
            state: VmState::Paused,
            pid: 7,
            uptime_ms: 5,
            vcpus: vec![VcpuStats {
                index: 0,
                tid: 8,
                cpu_ns: 9,
            }],
            io_tid: None,
            exits: ExitCounts::default(),
            memory: MemoryStats {
                guest_bytes: 1,
                resident_bytes: 0,
            },
            progress: 3,
            disks: vec![],
            dropped: DroppedBytes::default(),
        };
        let line = ok_reply(Some(&stats));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["state"], "paused");
        assert_eq!(v["io_tid"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Stats>(v).unwrap(), stats);
        assert_eq!(ok_reply::<Stats>(None), r#"{"ok":true}"#);
        let e: serde_json::Value = serde_json::from_str(&error_reply("no \"x\"")).unwrap();
        assert_eq!(e["ok"], false);
        assert_eq!(e["error"], "no \"x\"");
    }
}
