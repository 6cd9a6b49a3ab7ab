//! A busybox root filesystem for container tests: the static busybox of Debian's busybox-static
//! with a link per applet, and the mount points a container needs.

use std::path::{Path, PathBuf};

/// Where Debian's busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The static busybox, if installed; otherwise says loudly that `test` is skipped (or fails
/// the test when `COLO_REQUIRE_KVM=1`, as CI installs busybox-static).
pub fn busybox_or_skip(test: &str) -> Option<PathBuf> {
    let p = PathBuf::from(BUSYBOX);
    let is_static = std::fs::read(&p)
        .map(|b| !b.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"))
        .unwrap_or(false);
    if is_static {
        return Some(p);
    }
    let required = std::env::var("COLO_REQUIRE_KVM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: a static {BUSYBOX} is missing; install busybox-static (scripts/install-deps.sh)"
    );
    eprintln!("\n*** SKIPPED {test}: no static {BUSYBOX} (apt-get install busybox-static) ***\n");
    None
}

/// Builds a root filesystem in `dir`: `bin/busybox` with a symlink per applet in `bin`, and
/// the directories `proc dev sys tmp etc` (plus `extra` directories, e.g. volume targets).
pub fn busybox_rootfs(busybox: &Path, dir: &Path, extra: &[&str]) -> std::io::Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(busybox, bin.join("busybox"))?;
    let out = std::process::Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    for d in ["proc", "dev", "sys", "tmp", "etc"].iter().chain(extra) {
        std::fs::create_dir_all(dir.join(d.trim_start_matches('/')))?;
    }
    Ok(())
}
