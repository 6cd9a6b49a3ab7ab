//! SIGTERM and SIGINT end the VM as they end colo-vmm's (status 68, reason `signal`): they are
//! blocked in every thread and taken by one thread with `sigwait`, which asks QEMU to quit.
//! SIGHUP is ignored, so the stand-in outlives the session that started it, as colo-vmm does.

use std::sync::Arc;

use crate::vm::{Asked, Ending};

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later, and
/// ignores SIGHUP. Call first, while the process has one thread.
pub fn block() -> std::io::Result<()> {
    // SAFETY: signal-mask calls on a local sigset; SIG_IGN for SIGHUP is always valid.
    unsafe {
        let set = termination_set();
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    Ok(())
}

/// Takes the blocked signals on a thread of their own: each asks `ending` to end QEMU.
pub fn watch(ending: Arc<Ending>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("standin-signals".into())
        .spawn(move || {
            loop {
                let set = termination_set();
                let mut signo = 0;
                // SAFETY: `set` is an initialised sigset and `signo` a local out-parameter.
                if unsafe { libc::sigwait(&set, &mut signo) } != 0 {
                    continue;
                }
                ending.ask(Asked::Signal(match signo {
                    libc::SIGINT => "SIGINT",
                    _ => "SIGTERM",
                }));
            }
        })?;
    Ok(())
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid value to hand to sigemptyset, which initialises
    // it; sigaddset takes valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}
