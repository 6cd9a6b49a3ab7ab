//! Where output goes, within `--log-limit` as colo-vmm keeps it (colo-vmm's own
//! [`CappedFile`]): the stand-in's messages and QEMU's to `--log` and stderr, the guest's serial
//! console (QEMU's stdout) to `--serial`. The dropped bytes are counted for `stats` and the exit
//! record.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use colo_vmm::{CappedFile, DroppedBytes};

/// How many of QEMU's last messages are kept for the exit record of a failure.
const KEPT_QEMU_LINES: usize = 4;

/// The stand-in's log: `--log` (bounded) and stderr (the first `--log-limit` bytes).
#[derive(Debug)]
pub struct Log {
    inner: Mutex<LogInner>,
    /// Bytes of the log file dropped.
    file_dropped: Option<Arc<AtomicU64>>,
    stderr_dropped: AtomicU64,
    serial_dropped: Mutex<Option<Arc<AtomicU64>>>,
}

#[derive(Debug)]
struct LogInner {
    file: Option<CappedFile>,
    stderr_left: Option<u64>,
    qemu_tail: VecDeque<String>,
}

impl Log {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, limit: Option<u64>) -> std::io::Result<Self> {
        Ok(Self::new(Some(CappedFile::open(path, limit)?), limit))
    }

    /// A log on stderr alone.
    pub fn stderr(limit: Option<u64>) -> Self {
        Self::new(None, limit)
    }

    fn new(file: Option<CappedFile>, limit: Option<u64>) -> Self {
        Self {
            file_dropped: file.as_ref().map(CappedFile::dropped_counter),
            inner: Mutex::new(LogInner {
                file,
                stderr_left: limit,
                qemu_tail: VecDeque::new(),
            }),
            stderr_dropped: AtomicU64::new(0),
            serial_dropped: Mutex::new(None),
        }
    }

    /// Writes one line to the log file alone (what already went to stdout).
    pub fn file_line(&self, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &mut inner.file {
            let _ = f.write(format!("{}\n", text.trim_end()).as_bytes());
        }
    }

    /// Writes one line (a newline is added) to the log file and stderr.
    pub fn line(&self, text: &str) {
        let mut line = text.trim_end().to_string();
        line.push('\n');
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &mut inner.file {
            // Best effort, as all of colo-vmm's output: a full disk never stops the guest.
            let _ = f.write(line.as_bytes());
        }
        let len = line.len() as u64;
        match &mut inner.stderr_left {
            Some(left) if *left < len => {
                self.stderr_dropped.fetch_add(len, Ordering::Relaxed);
            }
            left => {
                if let Some(l) = left {
                    *l -= len;
                }
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    /// A message of the stand-in's: `colo-vmm-standin: TEXT`.
    pub fn say(&self, text: &str) {
        self.line(&format!("colo-vmm-standin: {text}"));
    }

    /// The last few lines QEMU printed, for the message of a failure.
    pub fn qemu_tail(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .qemu_tail
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Copies QEMU's stderr into the log, line by line (`qemu: ...`), until it closes.
    pub fn pump_qemu_messages(self: &Arc<Self>, from: impl Read + Send + 'static) {
        let log = self.clone();
        let spawned = std::thread::Builder::new()
            .name("standin-qemu-log".into())
            .spawn(move || {
                for line in BufReader::new(from).lines() {
                    let Ok(line) = line else { break };
                    log.line(&format!("qemu: {line}"));
                    let mut inner = log.inner.lock().unwrap_or_else(|p| p.into_inner());
                    if inner.qemu_tail.len() == KEPT_QEMU_LINES {
                        inner.qemu_tail.pop_front();
                    }
                    inner.qemu_tail.push_back(line);
                }
            });
        if let Err(e) = spawned {
            self.say(&format!(
                "cannot start the thread that copies QEMU's messages: {e}"
            ));
        }
    }

    /// The dropped-bytes counts so far.
    pub fn dropped(&self) -> DroppedBytes {
        let load = |c: &Option<Arc<AtomicU64>>| c.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        DroppedBytes {
            serial: load(
                &self
                    .serial_dropped
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            ),
            log: load(&self.file_dropped),
            stderr: self.stderr_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Where the guest's serial console goes.
#[derive(Debug)]
pub enum Serial {
    /// The stand-in's stdout, the first `--log-limit` bytes.
    Stdout(Option<u64>),
    /// A file, bounded as colo-vmm bounds it.
    File(CappedFile),
}

impl Serial {
    /// `stdout` or a file path (created, appended to).
    pub fn open(target: &str, limit: Option<u64>) -> std::io::Result<Self> {
        if target == "stdout" {
            return Ok(Self::Stdout(limit));
        }
        Ok(Self::File(CappedFile::open(Path::new(target), limit)?))
    }

    /// Copies QEMU's stdout (the serial console) here until it closes; the dropped bytes are
    /// counted in `log`'s [`Log::dropped`].
    pub fn pump(self, from: impl Read + Send + 'static, log: &Arc<Log>) -> std::io::Result<()> {
        let counter = match &self {
            Self::File(f) => f.dropped_counter(),
            Self::Stdout(_) => Arc::default(),
        };
        *log.serial_dropped.lock().unwrap_or_else(|p| p.into_inner()) = Some(counter.clone());
        std::thread::Builder::new()
            .name("standin-serial".into())
            .spawn(move || copy_serial(self, from, &counter))?;
        Ok(())
    }
}

fn copy_serial(mut to: Serial, mut from: impl Read, dropped: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        match &mut to {
            Serial::File(f) => {
                let _ = f.write(&buf[..n]);
            }
            Serial::Stdout(left) => match left {
                Some(l) if *l < n as u64 => {
                    dropped.fetch_add(n as u64, Ordering::Relaxed);
                }
                _ => {
                    if let Some(l) = left {
                        *l -= n as u64;
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                }
            },
        }
    }
}
