//! colo-vmm-standin end to end: boots colo's guest image through the stand-in (QEMU, TCG) the
//! way the agent starts colo-vmm, and checks its side of colo-vmm's contract: the `started`
//! line, `stats` on the control socket, a job over the `--channel` socket, the exit record and
//! status of a guest that powered itself off.
//!
//! Runs only where QEMU, a kernel and the guest image are at hand, else says SKIPPED loudly:
//! the image from `COLO_GUEST_E2E_INITRAMFS` or scripts/build-guest-image.sh's cache in the
//! target directory (run that script first); the kernel from `COLO_GUEST_E2E_KERNEL`, else the
//! one that cached image was built for (its modules match it), else `COLO_TCG_KERNEL` or
//! scripts/tcg-host.sh's cache.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colo_guest_agent::{Decoder, ExitStatus, GuestMessage, HostMessage, RunSpec, Stream, frame};
use colo_vmm::control::VmState;
use colo_vmm::{ControlClient, ExitReason, ExitRecord};

const TEST: &str = "vmm_standin::a_guest_job_runs_through_the_stand_in";
/// Generous: TCG on a loaded two-core machine (measured: the whole run takes ~6 s when idle).
const TIMEOUT: Duration = Duration::from_secs(300);

fn newest(paths: impl Iterator<Item = PathBuf>) -> Option<PathBuf> {
    paths
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

fn kernel(initramfs: Option<&Path>) -> Option<PathBuf> {
    let built_for = || {
        let named = std::fs::read_to_string(initramfs?.with_file_name("kernel")).ok()?;
        Some(PathBuf::from(named.trim_end())).filter(|k| k.is_file())
    };
    env_path("COLO_GUEST_E2E_KERNEL")
        .or_else(built_for)
        .or_else(|| env_path("COLO_TCG_KERNEL"))
        .or_else(|| {
            let cache =
                env_path("COLO_TCG_CACHE").unwrap_or_else(|| PathBuf::from("/var/cache/colo/tcg"));
            let dirs = std::fs::read_dir(cache).ok()?;
            newest(
                dirs.flatten()
                    .filter(|d| d.file_name().to_string_lossy().starts_with("linux-image-"))
                    .map(|d| d.path().join("vmlinuz")),
            )
        })
}

fn initramfs() -> Option<PathBuf> {
    env_path("COLO_GUEST_E2E_INITRAMFS").or_else(|| {
        let target = env_path("CARGO_TARGET_DIR")
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let dirs = std::fs::read_dir(target.join("guest-image")).ok()?;
        newest(dirs.flatten().map(|d| d.path().join("initramfs.cpio")))
    })
}

fn at_hand() -> Option<(PathBuf, PathBuf)> {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let image = initramfs();
    let found = (qemu, kernel(image.as_deref()), image);
    if let (true, Some(k), Some(i)) = found {
        return Some((k, i));
    }
    let why = match found {
        (false, ..) => "qemu-system-x86_64 is missing",
        (_, None, _) => "no kernel (scripts/tcg-host.sh caches one, or set COLO_TCG_KERNEL)",
        _ => "no guest image (run scripts/build-guest-image.sh, or set COLO_GUEST_E2E_INITRAMFS)",
    };
    eprintln!("\n*** SKIPPED {TEST}: {why} ***\n");
    None
}

/// Runs `echo hi; exit 7` over the channel; returns stdout and the exit status.
fn run_job(socket: &Path) -> (Vec<u8>, ExitStatus) {
    let deadline = Instant::now() + TIMEOUT;
    let mut sock = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("channel {}: {e}", socket.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut dec = Decoder::<GuestMessage>::new();
    let (mut stdout, mut next) = (Vec::new(), 0u64);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = sock.read(&mut buf).expect("the guest's messages");
        assert!(n > 0, "the guest closed the channel");
        dec.feed(&buf[..n]);
        while let Some(m) = dec.next_message().expect("well-formed frames") {
            let reply = match m {
                GuestMessage::Ready { .. } => HostMessage::Run(RunSpec {
                    path: "/bin/sh".into(),
                    args: vec!["-c".into(), "echo hi; exit 7".into()],
                    env: vec!["PATH=/bin".into()],
                    workdir: "/".into(),
                    uid: 0,
                    gid: 0,
                    rlimits: vec![],
                    hostname: "standin".into(),
                    root: None,
                }),
                GuestMessage::Output { stream, data, .. } => {
                    next += data.len() as u64;
                    if matches!(stream, Stream::Stdout) {
                        stdout.extend_from_slice(&data);
                    }
                    HostMessage::Ack { upto: next }
                }
                GuestMessage::Exited(status) => {
                    sock.write_all(&frame::to_bytes(&HostMessage::Ack { upto: next }))
                        .unwrap();
                    return (stdout, status);
                }
                GuestMessage::Error { message } => panic!("the guest reported: {message}"),
            };
            sock.write_all(&frame::to_bytes(&reply)).unwrap();
        }
    }
}

#[test]
fn a_guest_job_runs_through_the_stand_in() {
    let Some((kernel, initramfs)) = at_hand() else {
        return;
    };
    let _lock = colo_testkit::host_lock();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let disk = p("data.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let mut disk_arg = disk.clone().into_os_string();
    disk_arg.push(",ro");
    let mut vmm = Command::new(env!("CARGO_BIN_EXE_colo-vmm-standin"))
        .arg("run")
        .args(["--kernel".as_ref(), kernel.as_os_str()])
        .args(["--initrd".as_ref(), initramfs.as_os_str()])
        .args(["--cmdline", "console=ttyS0 panic=-1"])
        .args(["--vcpus", "2", "--memory-mib", "256", "--log-limit", "1MiB"])
        .args(["--disk".as_ref(), disk_arg.as_os_str()])
        .args(["--serial".as_ref(), p("serial.log").as_os_str()])
        .args(["--log".as_ref(), p("vmm.log").as_os_str()])
        .args(["--control-socket".as_ref(), p("control.sock").as_os_str()])
        .args(["--exit-record".as_ref(), p("exit.json").as_os_str()])
        .args(["--channel".as_ref(), p("channel.sock").as_os_str()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let mut started = String::new();
    BufReader::new(vmm.stdout.take().unwrap())
        .read_line(&mut started)
        .unwrap();
    let prefix = format!("colo-vmm: started pid={} vcpu_tids=", vmm.id());
    let tids = started
        .trim()
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" io_tid=-"))
        .unwrap_or_else(|| panic!("started line: {started:?}"));
    let tids: Vec<u32> = tids.split(',').map(|t| t.parse().unwrap()).collect();
    assert_eq!(tids.len(), 2, "{started}");

    let stats = ControlClient::connect(p("control.sock"))
        .and_then(|mut c| c.stats())
        .unwrap();
    assert_eq!(stats.state, VmState::Running);
    assert_eq!(stats.pid, vmm.id());
    assert_eq!(stats.vcpus.iter().map(|v| v.tid).collect::<Vec<_>>(), tids);
    assert_eq!(stats.memory.guest_bytes, 256 << 20);
    assert_eq!(stats.disks.len(), 1);

    let (stdout, status) = run_job(&p("channel.sock"));
    assert_eq!(stdout, b"hi\n");
    assert_eq!(status, ExitStatus::Code(7));

    let deadline = Instant::now() + TIMEOUT;
    let code = loop {
        if let Some(s) = vmm.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the guest did not power off");
        std::thread::sleep(Duration::from_millis(100));
    };
    let record = ExitRecord::read(&p("exit.json")).unwrap();
    assert_eq!(code, Some(65), "{record:?}");
    assert_eq!(record.reason, ExitReason::GuestReset, "{record:?}");
    assert_eq!(record.pid, vmm.id());
    // Powered off through ACPI (Debian's kernel), or restarted (colo's, without ACPI).
    assert!(
        record.message.contains("powered itself off") || record.message.contains("guest-reset"),
        "{record:?}"
    );
    let serial = std::fs::read_to_string(p("serial.log")).unwrap();
    assert!(serial.contains("colo-guest-init"), "{serial}");
    assert!(!p("control.sock").exists() && !p("channel.sock").exists());
}
