//! A busybox root filesystem for container tests: the static busybox of Debian's busybox-static
//! with a link per applet, and the mount points a container needs.

use std::path::{Path, PathBuf};

/// Where Debian's busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The static busybox, if installed; otherwise says loudly that `test` is skipped (or fails
/// the test when `COLO_REQUIRE_KVM=1`, as CI installs busybox-static).
pub fn busybox_or_skip(test: &str) -> Option<PathBuf> {
    let p = PathBuf::from(BUSYBOX);
    if std::fs::read(&p).is_ok_and(|b| is_static_elf(&b)) {
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

/// Whether `elf` is a 64-bit ELF executable without an interpreter (`PT_INTERP`): it runs in a
/// root filesystem that has no dynamic loader.
fn is_static_elf(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        // PT_INTERP is 3.
        u32_at(phoff + i * usize::from(phentsize)).is_some_and(|t| t != 3)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_not_static() {
        // This test binary is dynamically linked (it has a PT_INTERP header).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"not an elf"));
        if let Ok(b) = std::fs::read(BUSYBOX) {
            eprintln!("{BUSYBOX} static: {}", is_static_elf(&b));
        }
    }
}
