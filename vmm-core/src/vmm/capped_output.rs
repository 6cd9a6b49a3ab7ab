//! Output a guest (or a long-lived VMM) cannot use to fill the host's disk: `--log-limit`.
//!
//! * [`CappedFile`]: a file appended to, never holding more than the limit together with its
//!   older half. When the next write would take `PATH` past half the limit, `PATH` becomes
//!   `PATH.1` (the previous `PATH.1` and its bytes are dropped) and a new `PATH` starts. So the
//!   newest output is always kept, `PATH` + `PATH.1` ≤ limit, and what was dropped is counted.
//!   Cost: one `rename` and one `open` per half-limit of output.
//! * [`StreamBudget`]: for stdout and stderr, which cannot be rotated: the first `limit` bytes
//!   pass, later ones are dropped and counted.
//!
//! Both are best-effort like all VMM output: a failed write never stops the guest.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::exit::DroppedBytes;

/// Smallest `--log-limit`: half of it must hold a few whole lines.
pub const MIN_LOG_LIMIT: u64 = 4096;

/// Parses a `--log-limit` value (`16MiB`, `65536`), refusing values below [`MIN_LOG_LIMIT`].
pub fn parse_log_limit(s: &str) -> Result<u64, String> {
    let n = super::devices::virtio::block::parse_size(s)
        .ok_or_else(|| format!("`{s}` is not a size (e.g. 16MiB, 65536)"))?;
    if n < MIN_LOG_LIMIT {
        return Err(format!(
            "{s} is below the least limit, {MIN_LOG_LIMIT} bytes"
        ));
    }
    Ok(n)
}

/// The name of the older half of `path`: `PATH.1`.
pub fn older_half(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The dropped-bytes counters of a VMM's outputs, readable from any thread.
#[derive(Debug, Clone, Default)]
pub struct DroppedCounters {
    /// The serial device's.
    pub serial: Arc<AtomicU64>,
    /// The log file's.
    pub log: Arc<AtomicU64>,
    /// stderr's.
    pub stderr: Arc<AtomicU64>,
}

impl DroppedCounters {
    /// The counts now.
    pub fn snapshot(&self) -> DroppedBytes {
        let load = |c: &Arc<AtomicU64>| c.load(Ordering::Relaxed);
        DroppedBytes {
            serial: load(&self.serial),
            log: load(&self.log),
            stderr: load(&self.stderr),
        }
    }
}

/// An append-only file, bounded by rotation when it has a limit (see the module docs).
#[derive(Debug)]
pub struct CappedFile {
    path: PathBuf,
    file: File,
    /// Bytes `PATH` and `PATH.1` may hold together; `None`: unbounded.
    limit: Option<u64>,
    /// Bytes in `PATH`.
    len: u64,
    /// Bytes in `PATH.1`.
    older: u64,
    dropped: Arc<AtomicU64>,
}

impl CappedFile {
    /// Opens (creates, appends to) `path`. With a limit, earlier content that does not fit the
    /// rule (a `PATH` over half the limit, a `PATH.1` over half) is dropped, oldest first, and
    /// counted.
    pub fn open(path: &Path, limit: Option<u64>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        let older = fs::metadata(older_half(path)).map_or(0, |m| m.len());
        let mut f = Self {
            path: path.to_path_buf(),
            file,
            limit,
            len,
            older,
            dropped: Arc::default(),
        };
        if let Some(half) = f.half() {
            if f.len > half {
                f.rotate()?;
            }
            if f.older > half {
                f.dropped.fetch_add(f.older, Ordering::Relaxed);
                f.older = 0;
                let _ = fs::remove_file(older_half(&f.path));
            }
        }
        Ok(f)
    }

    fn half(&self) -> Option<u64> {
        self.limit.map(|l| (l / 2).max(1))
    }

    /// The count of bytes dropped to stay within the limit, for readers on other threads.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// Appends `buf`, rotating first if it would not fit; of a write larger than half the
    /// limit only its last half-limit bytes are kept.
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let Some(half) = self.half() else {
            return self.file.write_all(buf);
        };
        let mut data = buf;
        if data.len() as u64 > half {
            let cut = data.len() - half as usize;
            self.dropped.fetch_add(cut as u64, Ordering::Relaxed);
            data = &data[cut..];
        }
        if self.len + data.len() as u64 > half {
            self.rotate()?;
        }
        let r = self.file.write_all(data);
        self.len = match &r {
            Ok(()) => self.len + data.len() as u64,
            // A partial write (a full disk): the file knows how much it holds.
            Err(_) => self.file.metadata().map_or(self.len, |m| m.len()),
        };
        r
    }

    /// `PATH` → `PATH.1` (dropping the older half), and a new, empty `PATH`. When the rename is
    /// impossible, `PATH` is emptied instead (its bytes dropped).
    fn rotate(&mut self) -> std::io::Result<()> {
        match fs::rename(&self.path, older_half(&self.path)) {
            Ok(()) => {
                self.dropped.fetch_add(self.older, Ordering::Relaxed);
                self.older = self.len;
            }
            Err(_) => {
                self.dropped.fetch_add(self.len, Ordering::Relaxed);
            }
        }
        self.len = 0;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        Ok(())
    }
}

/// A byte budget for a stream that cannot be rotated (stdout, stderr).
#[derive(Debug, Default)]
pub struct StreamBudget {
    limit: Option<u64>,
    used: AtomicU64,
    dropped: Arc<AtomicU64>,
}

impl StreamBudget {
    /// A budget of `limit` bytes (`None`: unbounded).
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Whether `len` more bytes may be written; if not, they are counted as dropped. A chunk
    /// either passes whole or not at all, so lines are never cut.
    pub fn admit(&self, len: usize) -> bool {
        let len = len as u64;
        let Some(limit) = self.limit else {
            return true;
        };
        let ok = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u + len <= limit).then_some(u + len)
            })
            .is_ok();
        if !ok {
            self.dropped.fetch_add(len, Ordering::Relaxed);
        }
        ok
    }

    /// The count of bytes dropped, for readers on other threads.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(p: &Path) -> u64 {
        fs::metadata(p).map_or(0, |m| m.len())
    }

    trait Dropped {
        fn dropped(&self) -> u64;
    }

    impl Dropped for CappedFile {
        fn dropped(&self) -> u64 {
            self.dropped.load(Ordering::Relaxed)
        }
    }

    impl Dropped for StreamBudget {
        fn dropped(&self) -> u64 {
            self.dropped.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn far_more_than_the_limit_keeps_the_newest_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let limit = 4096;
        let mut f = CappedFile::open(&path, Some(limit)).unwrap();
        let mut total = 0u64;
        for i in 0..10_000u32 {
            let line = format!("line {i:05}\n");
            f.write(line.as_bytes()).unwrap();
            total += line.len() as u64;
            let kept = size(&path) + size(&older_half(&path));
            assert!(kept <= limit, "{kept} bytes kept after line {i}");
            assert_eq!(kept + f.dropped(), total, "every byte is kept or counted");
        }
        let newest = fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with("line 09999\n"), "{newest}");
        let older = fs::read_to_string(older_half(&path)).unwrap();
        let first_kept: u32 = older.lines().next().unwrap()[5..].parse().unwrap();
        assert!(
            first_kept > 9000,
            "the oldest lines went first: {first_kept}"
        );
        // Whole lines: rotation happens between writes, never inside one.
        assert!(older.starts_with("line ") && older.ends_with('\n'));
    }

    #[test]
    fn a_write_larger_than_half_keeps_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = CappedFile::open(&path, Some(4096)).unwrap();
        f.write(b"first\n").unwrap();
        let big: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        f.write(&big).unwrap();
        assert_eq!(fs::read(&path).unwrap(), &big[big.len() - 2048..]);
        assert_eq!(fs::read(older_half(&path)).unwrap(), b"first\n");
        assert_eq!(f.dropped(), 10_000 - 2048);
    }

    #[test]
    fn oversized_files_of_an_earlier_run_are_brought_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, vec![b'x'; 5000]).unwrap();
        fs::write(older_half(&path), vec![b'y'; 100]).unwrap();
        let mut f = CappedFile::open(&path, Some(4096)).unwrap();
        assert_eq!(f.dropped(), 5100);
        f.write(b"new\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
        assert!(!older_half(&path).exists());
    }

    #[test]
    fn without_a_limit_everything_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = CappedFile::open(&path, None).unwrap();
        for _ in 0..1000 {
            f.write(b"0123456789").unwrap();
        }
        assert_eq!(size(&path), 10_000);
        assert_eq!(f.dropped(), 0);
    }

    #[test]
    fn a_stream_budget_passes_whole_chunks_up_to_the_limit() {
        let b = StreamBudget::new(Some(10));
        assert!(b.admit(6));
        assert!(!b.admit(6));
        assert!(b.admit(4));
        assert!(!b.admit(1));
        assert_eq!(b.dropped(), 7);
        assert!(StreamBudget::new(None).admit(1 << 40));
    }

    #[test]
    fn limits_parse_with_units_and_refuse_tiny_values() {
        assert_eq!(parse_log_limit("16MiB"), Ok(16 << 20));
        assert_eq!(parse_log_limit("65536"), Ok(65536));
        assert!(parse_log_limit("100").unwrap_err().contains("4096"));
        assert!(parse_log_limit("lots").unwrap_err().contains("not a size"));
    }
}
