//! A real Linux kernel (colo's minimal guest kernel, scripts/build-guest-kernel.sh) boots in
//! colo-vmm and mounts its ext4 root from a virtio-mmio disk.
//!
//! On KVM-PVM hosts guest kernel code runs through KVM's emulator: the boot takes ~40 s, and user
//! space cannot run (its first system call fails), so the test stops at the root mount.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use colo_testkit::host_lock;
use common::{Vm, VmArgs, can_run};

/// `$COLO_GUEST_KERNEL`, else the cached build of scripts/build-guest-kernel.sh.
fn guest_kernel() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COLO_GUEST_KERNEL") {
        return Some(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-guest-kernel.sh");
    let out = Command::new(script).arg("--cached").output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[test]
fn linux_mounts_its_ext4_root_from_a_virtio_disk() {
    let name = "linux_mounts_its_ext4_root_from_a_virtio_disk";
    if !can_run(name, false) {
        return;
    }
    let Some(kernel) = guest_kernel() else {
        let required = std::env::var("COLO_REQUIRE_KVM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{name}: no guest kernel; run scripts/build-guest-kernel.sh (scripts/test-all.sh does)"
        );
        eprintln!(
            "\n*** SKIPPED {name}: no guest kernel built; run scripts/build-guest-kernel.sh ***\n"
        );
        return;
    };
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/colo-rootfs"), "colo\n").unwrap();
    std::fs::write(root.join("init"), "#!/bin/sh\necho colo init\n").unwrap();
    let image = dir.path().join("root.img");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-rootfs.sh");
    let st = Command::new(script)
        .arg(&root)
        .arg(&image)
        .arg("32")
        .status()
        .unwrap();
    assert!(st.success(), "build-rootfs.sh failed");

    let t0 = Instant::now();
    let vm = Vm::start(VmArgs {
        kernel: Some(kernel),
        cmdline: "console=ttyS0 8250.nr_uarts=1 root=/dev/vda rootfstype=ext4 rw panic=-1 reboot=k",
        memory_mib: 256,
        extra: vec!["--disk".into(), image.to_str().unwrap().to_string()],
        ..Default::default()
    });
    // ~40 s on an idle host; a loaded one gives the vCPU a fraction of a CPU, and on KVM-PVM
    // the kernel's code runs through KVM's instruction emulator: the bound is the guest's
    // progress (no console change while the vCPU runs 2 minutes of CPU time, against the ~17 s
    // of the longest quiet stretch of a boot), capped at 30 minutes of wall time.
    let mounted = vm.wait_serial_progressing(
        "EXT4-fs (vda): mounted filesystem",
        Duration::from_secs(120),
        Duration::from_secs(1800),
    );
    let serial = vm.serial();
    eprintln!(
        "Linux: root mounted after {:.1} s ({} bytes of console output)",
        t0.elapsed().as_secs_f64(),
        serial.len()
    );
    if let Err(why) = mounted {
        // Whether the guest still runs: its exits and vCPU time over 5 s (a guest spinning in
        // the kernel's KVM shows CPU time but no exit reaching the VMM; a blocked VMM neither).
        let sample = || {
            colo_vmm::ControlClient::connect(vm.path("ctl.sock"))
                .and_then(|mut c| c.stats())
                .map(|s| (s.exits, s.vcpus.iter().map(|v| v.cpu_ns).sum::<u64>()))
        };
        let before = sample();
        std::thread::sleep(Duration::from_secs(5));
        let after = sample();
        panic!(
            "no ext4 mount on the console: {why}\nVMM stats 5 s apart (exits, vCPU ns): \
             {before:?} -> {after:?}\n{serial}"
        );
    }
    assert!(serial.contains("virtio_blk virtio0: [vda]"), "{serial}");
    // One vCPU, one CPU: a guest with more gets an MP table, whose boot does not complete on
    // KVM-PVM (docs/vmm.md, "SMP: the MP table").
    assert!(serial.contains("smp: Brought up 1 node, 1 CPU"), "{serial}");
    if let Ok(mut c) = colo_vmm::ControlClient::connect(vm.path("ctl.sock")) {
        let _ = c.shutdown();
    }
}
