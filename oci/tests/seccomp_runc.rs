//! The converted default profile loads in a real runc and a shell runs under it.
//!
//! Needs root, runc, busybox-static and containers-common's profile; says SKIPPED otherwise.
//! The container's cgroup is `/colo-test-<pid>/seccomp`, removed from every hierarchy afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use colo_oci::seccomp::{DEFAULT_PROFILE, load_containers_profile, running_kernel};

/// The container ecosystem's default capability set (what colo grants a container).
const DEFAULT_CAPS: &[&str] = colo_oci::bundle::DEFAULT_CAPABILITIES;

/// Removes `/sys/fs/cgroup/*/<top>` (and what runc made beneath it) when dropped.
struct CgroupCleanup {
    top: String,
}

fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for hierarchy in hierarchies.flatten() {
            let mine = hierarchy.path().join(&self.top);
            if mine.is_dir() {
                rmdir_tree(&mine);
            }
        }
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.is_file())
}

#[test]
fn a_shell_runs_under_the_converted_profile_in_runc() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let runc = find(&["/usr/sbin/runc", "/usr/bin/runc"]);
    let busybox = find(&["/bin/busybox", "/usr/bin/busybox"]);
    let (Some(runc), Some(busybox), true, true) =
        (runc, busybox, root, Path::new(DEFAULT_PROFILE).exists())
    else {
        eprintln!("SKIPPED: needs root, runc, busybox-static and {DEFAULT_PROFILE}");
        return;
    };
    let seccomp =
        load_containers_profile(Path::new(DEFAULT_PROFILE), DEFAULT_CAPS, running_kernel())
            .expect("profile converts");

    let bundle = tempfile::tempdir().expect("tempdir");
    let rootfs = bundle.path().join("rootfs");
    for dir in ["bin", "proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(rootfs.join(dir)).expect("mkdir");
    }
    fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "grep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("applet");
    }
    let spec = Command::new(&runc)
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .expect("runc spec");
    assert!(spec.success());

    let config_path = bundle.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(&config_path).expect("read config")).expect("config json");
    let pid = std::process::id();
    let top = format!("colo-test-{pid}");
    let cleanup = CgroupCleanup { top: top.clone() };
    config["process"]["terminal"] = false.into();
    config["process"]["args"] =
        serde_json::json!(["/bin/sh", "-c", "echo ok; grep Seccomp: /proc/self/status"]);
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set] = serde_json::json!(DEFAULT_CAPS);
    }
    config["linux"]["seccomp"] = serde_json::to_value(&seccomp).expect("seccomp json");
    config["linux"]["cgroupsPath"] = format!("/{top}/seccomp").into();
    fs::write(&config_path, config.to_string()).expect("write config");

    let state = bundle.path().join("state");
    let output = Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&top)
        .output()
        .expect("runc run");
    let _ = Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", &top])
        .output();
    drop(cleanup);
    let left: Vec<_> = fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
        .map(|h| h.path().join(&top))
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "runc run: {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("ok\n"), "{stdout}");
    assert!(
        stdout.contains("Seccomp:\t2"),
        "a seccomp filter is in force: {stdout}"
    );
}
