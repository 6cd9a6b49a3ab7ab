//! The host end of `scripts/guest-smoke.sh`: connects to the guest's channel (QEMU's Unix
//! socket chardev behind a virtconsole; QEMU waits for this connection before it starts the
//! guest, so `Ready` cannot go out unheard), waits for `Ready`, runs
//! `/bin/sh -c 'echo hi; exit 7'` and checks that `hi\n` arrives on stdout and the exit code is
//! 7. Prints the time from its connection to `Ready`, and from there to `Exited`.
//!
//! With `--root DEVICE` the job runs in the root file system on that disk (ext4, read-only,
//! under the guest's overlay) and checks it is there, writable and named as the spec says.
//!
//! With `--missing-command` the job's command does not exist, and the guest must report that
//! as `Error` (then power off).
//!
//! `cargo run --example guest_smoke -- SOCKET [TIMEOUT_SECS [--root DEVICE | --missing-command]]`;
//! exit status 0 when the guest answered as expected.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use colo_guest_agent::{
    Decoder, ExitStatus, GuestMessage, HostMessage, RootDisk, RunSpec, Stream, frame,
};

/// What the run checks.
#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    /// `echo hi; exit 7` from the initramfs.
    Initramfs,
    /// The same in the root file system on this disk, after checking that it runs in that root
    /// (its marker file), that the root is writable (the overlay) and that the host name is the
    /// spec's.
    Root(&'a str),
    /// A command that does not exist: the guest must report `Error` and power off.
    MissingCommand,
}

const MISSING: &str = "/nonexistent/command";

fn job(mode: Mode<'_>) -> RunSpec {
    let root = match mode {
        Mode::Root(device) => Some(device),
        _ => None,
    };
    let script = match root {
        None => "echo hi; exit 7",
        Some(_) => {
            "test -f /colo-root-marker || exit 90; echo hi >/tmp/f || exit 91; \
             test \"$(hostname)\" = colo-smoke || exit 92; cat /tmp/f; exit 7"
        }
    };
    RunSpec {
        path: if matches!(mode, Mode::MissingCommand) {
            MISSING
        } else {
            "/bin/sh"
        }
        .into(),
        args: vec!["-c".into(), script.into()],
        env: vec!["PATH=/bin:/sbin".into()],
        workdir: "/".into(),
        uid: 0,
        gid: 0,
        rlimits: vec![],
        hostname: "colo-smoke".into(),
        root: root.map(|device| RootDisk {
            device: device.into(),
            fstype: "ext4".into(),
            volumes: vec![],
        }),
    }
}

fn run(socket: &str, timeout: Duration, mode: Mode<'_>) -> Result<bool, String> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut sock = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("cannot connect to {socket}: {e}")),
        }
    };
    println!(
        "guest-smoke: connected after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let send = |sock: &mut UnixStream, m: &HostMessage| {
        sock.write_all(&frame::to_bytes(m))
            .map_err(|e| format!("send {m:?}: {e}"))
    };
    let mut dec = Decoder::<GuestMessage>::new();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut next = 0u64;
    let mut sent_run = false;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {timeout:?}"));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match sock.read(&mut buf) {
            Ok(0) => return Err("the guest closed the channel".into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        dec.feed(&buf[..n]);
        while let Some(m) = dec.next_message().map_err(|e| format!("bad frame: {e}"))? {
            match m {
                GuestMessage::Ready { version } if !sent_run => {
                    println!(
                        "guest-smoke: Ready (protocol {version}) after {:.2} s",
                        start.elapsed().as_secs_f64()
                    );
                    send(&mut sock, &HostMessage::Run(job(mode)))?;
                    sent_run = true;
                }
                GuestMessage::Ready { .. } => {}
                GuestMessage::Output {
                    stream,
                    offset,
                    data,
                } => {
                    if offset != next {
                        return Err(format!("output at offset {offset}, expected {next}"));
                    }
                    next += data.len() as u64;
                    match stream {
                        Stream::Stdout => stdout.extend_from_slice(&data),
                        Stream::Stderr => stderr.extend_from_slice(&data),
                    }
                    send(&mut sock, &HostMessage::Ack { upto: next })?;
                }
                GuestMessage::Exited(status) => {
                    send(&mut sock, &HostMessage::Ack { upto: next })?;
                    let out = String::from_utf8_lossy(&stdout);
                    let err = String::from_utf8_lossy(&stderr);
                    println!(
                        "guest-smoke: stdout {out:?}, stderr {err:?}, {status:?} after {:.2} s",
                        start.elapsed().as_secs_f64()
                    );
                    let expected = !matches!(mode, Mode::MissingCommand);
                    return Ok(expected && stdout == b"hi\n" && status == ExitStatus::Code(7));
                }
                GuestMessage::Error { message } => {
                    println!(
                        "guest-smoke: Error {message:?} after {:.2} s",
                        start.elapsed().as_secs_f64()
                    );
                    let expected = format!("cannot start {MISSING}: ");
                    return Ok(
                        matches!(mode, Mode::MissingCommand) && message.starts_with(&expected)
                    );
                }
            }
        }
    }
}

const USAGE: &str = "usage: guest_smoke SOCKET [TIMEOUT_SECS [--root DEVICE | --missing-command]]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(socket) = args.get(1) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let mode = match (args.get(3).map(String::as_str), args.get(4)) {
        (Some("--root"), Some(device)) => Mode::Root(device),
        (Some("--missing-command"), None) => Mode::MissingCommand,
        (None, _) => Mode::Initramfs,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(socket, Duration::from_secs(secs), mode) {
        Ok(true) => {
            println!("guest-smoke: PASS");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("guest-smoke: FAIL (expected stdout \"hi\\n\" and exit code 7)");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("guest-smoke: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}
