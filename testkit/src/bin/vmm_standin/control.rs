//! colo-vmm's control socket, served with colo-vmm's own protocol types
//! ([`colo_vmm::control`]): one request per line, one JSON reply per line. `pause` and `resume`
//! become QMP `stop` and `cont`, `shutdown` QMP `quit` (the VM ends at once with status 67, as
//! colo-vmm's does), `stats` what [`Vm::stats`] can measure; `set_io_limit` is refused, as the
//! stand-in enforces no IO limits.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use colo_vmm::control::{ControlRequest, Stats, error_reply, ok_reply, take_lines};

use crate::vm::Vm;

/// Binds the control socket at `path`, mode 0600: a stale socket file is replaced, a socket
/// where something still listens is refused (as colo-vmm refuses it, exit 64).
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "--control-socket {}: the path exists and is not a socket; remove it",
                path.display()
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "--control-socket {}: a VMM already listens there",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("--control-socket {}: stale socket: {e}", path.display()))?;
    }
    // The mode is set before the socket listens: a request can end the VM. Nothing else
    // creates files while the process is single-threaded here.
    // SAFETY: umask only swaps the process's file-mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    bound.map_err(|e| format!("--control-socket {}: {e}", path.display()))
}

/// Serves `listener` on its own thread, each client on a thread of its own.
pub fn serve(listener: UnixListener, vm: Arc<Vm>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("standin-control".into())
        .spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let vm = vm.clone();
                let _ = std::thread::Builder::new()
                    .name("standin-client".into())
                    .spawn(move || serve_client(client, &vm));
            }
        })?;
    Ok(())
}

fn serve_client(mut client: UnixStream, vm: &Vm) {
    let mut input = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        input.extend_from_slice(&buf[..n]);
        let lines = take_lines(&mut input);
        for line in lines.lines.iter().filter(|l| !l.is_empty()) {
            let request = ControlRequest::parse(line);
            let reply = match &request {
                Ok(r) => answer(r, vm),
                Err(e) => error_reply(&e.to_string()),
            };
            if writeln!(client, "{reply}").is_err() {
                return;
            }
            if matches!(request, Ok(ControlRequest::Shutdown)) {
                vm.shutdown();
            }
        }
        if lines.overlong {
            return;
        }
    }
}

/// The reply to one request (`shutdown` acts after its reply has gone out).
fn answer(request: &ControlRequest, vm: &Vm) -> String {
    let done = |r: Result<(), String>| match r {
        Ok(()) => ok_reply::<Stats>(None),
        Err(e) => error_reply(&e),
    };
    match request {
        ControlRequest::Pause => done(vm.pause()),
        ControlRequest::Resume => done(vm.resume()),
        ControlRequest::Stats => ok_reply(Some(&vm.stats())),
        ControlRequest::Shutdown => ok_reply::<Stats>(None),
        ControlRequest::SetIoLimit { .. } => error_reply(
            "colo-vmm-standin does not support set_io_limit: it is a test-only stand-in for \
             colo-vmm, and its QEMU disks run without colo's token buckets",
        ),
    }
}
