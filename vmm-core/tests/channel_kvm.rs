//! The host channel on real KVM: the workload guest's ring-3 virtio-console driver
//! (`chan=echo:BYTES`) against colo-vmm's console device, its `colo-chan` thread and the
//! `--channel` socket.
//!
//! Every test holds `colo_testkit::host_lock()` for its whole run.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use colo_testkit::host_lock;
use colo_vmm::{EXIT_BAD_INPUT, EXIT_SHUTDOWN};
use common::{VMM, Vm, VmArgs, can_run};

/// What the guest sends first, before it echoes anything.
const HELLO: &[u8] = b"colo-guest: channel up\n";

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(113).wrapping_add((i >> 8) as u8))
        .collect()
}

#[test]
fn guest_and_host_exchange_bytes_over_the_channel() {
    if !can_run("guest_and_host_exchange_bytes_over_the_channel", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("chan.sock");
    let n = 256 * 1024;
    let mut vm = Vm::start(VmArgs {
        cmdline: &format!("chan=echo:{n} exit=0"),
        extra: vec!["--channel".into(), sock.to_str().unwrap().into()],
        ..Default::default()
    });
    // The guest wrote its greeting before anyone connected: it was held, not dropped.
    let mut client = UnixStream::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut hello = vec![0u8; HELLO.len()];
    client.read_exact(&mut hello).unwrap();
    assert_eq!(hello, HELLO, "{}", String::from_utf8_lossy(&hello));

    // 256 KiB in (more than the socket buffers and the VMM's 16 KiB hold), the same back.
    let data = pattern(n);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent));
    let mut back = vec![0u8; n];
    client.read_exact(&mut back).unwrap();
    writing.join().unwrap().unwrap();
    assert!(back == data, "the echo differs from what was sent");

    assert_eq!(
        vm.wait(Duration::from_secs(60)).code(),
        Some(0),
        "{}",
        vm.serial()
    );
    let done = format!("colo-guest: chan echoed 0x{n:016x}");
    assert!(vm.serial().contains(&done), "{}", vm.serial());
    assert!(!sock.exists(), "the socket file outlives the VM");
}

#[test]
fn a_live_channel_socket_is_not_taken_over() {
    if !can_run("a_live_channel_socket_is_not_taken_over", false) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("chan.sock");
    let mut first = Vm::start(VmArgs {
        cmdline: "hold=30",
        extra: vec!["--channel".into(), sock.to_str().unwrap().into()],
        ..Default::default()
    });
    let guest = colo_vmm::workload_guest_path().unwrap();
    let out = Command::new(VMM)
        .arg("run")
        .arg("--kernel")
        .arg(&guest)
        .arg("--channel")
        .arg(&sock)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_BAD_INPUT), "{stderr}");
    assert!(
        stderr.contains("--channel") && stderr.contains("in use"),
        "{stderr}"
    );
    // The first VM still serves it.
    assert!(UnixStream::connect(&sock).is_ok());
    first.control().shutdown().unwrap();
    assert_eq!(
        first.wait(Duration::from_secs(10)).code(),
        Some(EXIT_SHUTDOWN)
    );
}

/// Resident set of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_flooding_guest_waits_for_a_slow_client_and_loses_nothing() {
    if !can_run(
        "a_flooding_guest_waits_for_a_slow_client_and_loses_nothing",
        false,
    ) {
        return;
    }
    let _lock = host_lock();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("chan.sock");
    let n: usize = 16 << 20;
    let mut vm = Vm::start(VmArgs {
        cmdline: &format!("chan=flood:{n} exit=0"),
        extra: vec!["--channel".into(), sock.to_str().unwrap().into()],
        ..Default::default()
    });
    let mut client = UnixStream::connect(&sock).unwrap();
    // The client reads nothing for 2 s: the guest must stall, and the VMM must not buffer the
    // 16 MiB the guest wants to send.
    let rss_before = rss_kib(vm.pid);
    std::thread::sleep(Duration::from_secs(2));
    let rss_stalled = rss_kib(vm.pid);
    assert!(
        vm.child.try_wait().unwrap().is_none(),
        "the guest finished without a reader: {}",
        vm.serial()
    );
    assert!(!vm.serial().contains("chan sent"), "{}", vm.serial());
    assert!(
        rss_stalled < rss_before + 4096,
        "the VMM grew from {rss_before} KiB to {rss_stalled} KiB while the client did not read"
    );

    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut hello = vec![0u8; HELLO.len()];
    client.read_exact(&mut hello).unwrap();
    assert_eq!(hello, HELLO);
    let mut got = vec![0u8; n];
    client.read_exact(&mut got).unwrap();
    if let Some(i) = got.iter().enumerate().position(|(i, b)| *b != i as u8) {
        panic!("byte {i} is {:#x}, not {:#x}", got[i], i as u8);
    }
    assert_eq!(
        vm.wait(Duration::from_secs(60)).code(),
        Some(0),
        "{}",
        vm.serial()
    );
    let done = format!("colo-guest: chan sent 0x{n:016x}");
    assert!(vm.serial().contains(&done), "{}", vm.serial());
}
