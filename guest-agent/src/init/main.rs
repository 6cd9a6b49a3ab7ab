//! `colo-guest-init`: PID 1 of a colo Linux guest (the initramfs's `/init`, a static binary).
//!
//! It mounts the kernel's file systems, loads the modules the image lists, opens the host
//! channel, says `Ready`, takes one `Run`, enters the job's root (if any), sets the host name,
//! runs the command and supervises it (output, signals, orphans), says `Exited`, waits up to
//! [`FINAL_ACK_TIMEOUT`] for the host to take the last output, syncs and ends the VM ([`VmEnd`]:
//! a power-off, or a restart on a kernel without ACPI). Any failure is reported over the channel
//! as `Error` (and on the console) before the end.
//!
//! | module | what |
//! |---|---|
//! | `mounts` | `/proc`, `/sys`, `/dev`; the job's root (read-only disk + overlay on tmpfs) |
//! | `kmod` | kernel modules listed by the image |
//! | `channel` | the virtio-console port: raw mode, framing, non-blocking I/O |
//! | `child` | the job's process: pipes, identity, limits, signals, reaping |
//! | `output_log` | un-acknowledged output, bounded (backpressure) and re-sendable |
//! | `session` | the poll loop that ties them together |

mod channel;
mod child;
mod kmod;
mod mounts;
mod output_log;
mod session;

use std::io::Read;
use std::time::Duration;

use channel::{Channel, ChannelError};
use child::{ChildError, Job, Reaper};
use kmod::KmodError;
use mounts::MountError;
use session::{Session, SessionError};

/// Un-acknowledged output the guest holds before it stops reading the job's pipes.
const OUTPUT_LOG_CAPACITY: usize = 4 * 1024 * 1024;
/// How long the guest waits for the host's last `Ack` before powering off.
const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the channel device may take to appear after the modules are loaded.
const CHANNEL_WAIT: Duration = Duration::from_secs(10);

/// Errors of the guest's life.
#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Kmod(#[from] KmodError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("cannot set the host name {name:?}: {source}")]
    Hostname { name: String, source: nix::Error },
}

fn say(what: &str) {
    eprintln!("colo-guest-init: {what}");
}

/// Makes sure descriptors 0–2 are open (on `/dev/console`): a kernel that found no
/// `/dev/console` in the initramfs starts init without them, and the first file opened would
/// otherwise become its stdin.
fn ensure_stdio() {
    // SAFETY: fcntl(F_GETFD) only asks whether descriptor 2 is open.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return;
    }
    // SAFETY: open with a static NUL-terminated path; dup2 onto the standard descriptors.
    unsafe {
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if fd >= 0 {
            for target in 0..3 {
                if target != fd {
                    libc::dup2(fd, target);
                }
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

fn kernel_cmdline() -> String {
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open("/proc/cmdline") {
        let _ = f.take(4096).read_to_string(&mut s);
    }
    s
}

/// What happens once the channel is open.
fn serve(session: &mut Session) -> Result<(), InitError> {
    let spec = session.wait_for_run()?;
    if let Some(root) = &spec.root {
        mounts::enter_root(root)?;
    }
    nix::unistd::sethostname(&spec.hostname).map_err(|source| InitError::Hostname {
        name: spec.hostname.clone(),
        source,
    })?;
    let mut job = Job::spawn(&spec)?;
    say(&format!("job started: {} (pid {})", spec.path, job.pid()));
    let status = session.supervise(&mut job)?;
    say(&format!("job ended: {status:?}"));
    if !session.finish(FINAL_ACK_TIMEOUT)? {
        say("the host did not acknowledge all output in time");
    }
    Ok(())
}

/// How the guest ends the VM. Linux powers off only through a power-off driver (on x86 ACPI's);
/// without one `reboot(RB_POWER_OFF)` halts the CPUs and the VM never ends. colo-vmm has no ACPI
/// and ends a Linux guest's reset (the kernel's i8042 reset) as `guest_reset`, so a kernel without
/// ACPI restarts instead; QEMU ends on either with `-no-reboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VmEnd {
    PowerOff,
    Restart,
}

impl VmEnd {
    /// `/sys/firmware/acpi` exists when the kernel runs with ACPI (and `/sys` is mounted).
    fn of_this_kernel() -> Self {
        if std::path::Path::new("/sys/firmware/acpi").exists() {
            Self::PowerOff
        } else {
            Self::Restart
        }
    }
}

fn end_vm(how: VmEnd) -> ! {
    nix::unistd::sync();
    let mode = match how {
        VmEnd::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        VmEnd::Restart => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
    };
    let e = nix::sys::reboot::reboot(mode);
    say(&format!("{how:?} failed: {e:?}"));
    // PID 1 must not exit (the kernel would panic); wait for the host to end the VM.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!(
            "colo-guest-init is the PID 1 of a colo Linux guest (its initramfs's /init); it does not run on a host"
        );
        std::process::exit(2);
    }
    let mounted = mounts::mount_kernel_filesystems("");
    // Decided now, while `/sys` is the initramfs's (a job's root has its own).
    let end = VmEnd::of_this_kernel();
    ensure_stdio();
    if let Err(e) = mounted {
        say(&e.to_string());
        end_vm(end);
    }
    // The channel may work without the module that failed (a driver built in): the error then
    // goes to the host too.
    let cmdline = kernel_cmdline();
    let kmod_error = match kmod::load_listed(&cmdline) {
        Ok(n) => {
            if n > 0 {
                say(&format!("loaded {n} kernel modules"));
            }
            None
        }
        Err(e) => {
            say(&e.to_string());
            Some(e)
        }
    };
    let device = channel::device_from_cmdline(&cmdline);
    let chan = match Channel::open(device, CHANNEL_WAIT) {
        Ok(c) => c,
        Err(e) => {
            say(&e.to_string());
            end_vm(end);
        }
    };
    let mut session = Session::new(chan, Reaper::All, OUTPUT_LOG_CAPACITY);
    let result = match kmod_error {
        Some(e) => Err(e.into()),
        None => serve(&mut session),
    };
    if let Err(e) = result {
        let message = e.to_string();
        say(&message);
        session.report_error(&message, FINAL_ACK_TIMEOUT);
    }
    end_vm(end);
}
