//! A host-wide lock for tests that need the machine to themselves.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

/// Held while a serialised test runs; dropping it lets the next one in.
#[derive(Debug)]
pub struct HostLock {
    // Keeps the locked file open; the lock is released when the descriptor closes.
    _file: File,
}

/// Path of the lock file: `$COLO_TEST_LOCK` or `/tmp/colo-test.lock`.
fn lock_path() -> PathBuf {
    std::env::var_os("COLO_TEST_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/colo-test.lock"))
}

/// Blocks until this test holds the machine-wide test lock.
///
/// Every test that boots VMs, writes cgroups or measures time takes this lock first, in every
/// crate, so that `cargo test --workspace` (which runs test binaries one after another but the
/// tests inside one binary on several threads) never runs two of them at once.
///
/// # Panics
/// When the lock file cannot be opened or locked: a test cannot run safely without it.
pub fn host_lock() -> HostLock {
    lock_file(&lock_path())
}

/// Blocks until the exclusive `flock` on `path` is ours.
fn lock_file(path: &std::path::Path) -> HostLock {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open test lock {}: {e}", path.display()));
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours and touches no memory.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "cannot lock {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    HostLock { _file: file }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_between_descriptors() {
        let dir = tempfile_dir();
        let path = dir.join("lock");
        let held = lock_file(&path);
        let other = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // SAFETY: non-blocking flock on a descriptor we own.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&other),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        assert_eq!(
            rc, -1,
            "a second descriptor must not get the lock while it is held"
        );
        drop(held);
        // Another test of this binary may fork a child at any moment; until that child execs, it
        // holds a copy of every descriptor, the lock's too. So the lock is free within a moment
        // of the drop, not necessarily at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let rc = loop {
            // SAFETY: as above.
            let rc = unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&other),
                    libc::LOCK_EX | libc::LOCK_NB,
                )
            };
            if rc == 0 || std::time::Instant::now() >= deadline {
                break rc;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(rc, 0, "the lock must be free once the holder is dropped");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("colo-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
