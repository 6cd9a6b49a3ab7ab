//! The main thread's loop while the VM runs: one `poll` on the VM's end event, the termination
//! signals, the control socket and its clients; each ready client is served in
//! `commands.rs`. vCPU and IO threads never go through here.

use std::os::fd::AsRawFd;

use super::Vmm;
use super::outcome::Outcome;

impl Vmm {
    /// Serves the control socket and signals until the VM ends.
    pub(super) fn wait(mut self) -> (Outcome, Self) {
        loop {
            if let Some(o) = self.shared.outcome() {
                return (o, self);
            }
            let mut fds = vec![
                pollfd(self.shared.end_event().as_raw_fd()),
                pollfd(self.signals.fd().as_raw_fd()),
            ];
            if let Some(c) = &self.control {
                fds.push(pollfd(c.listener.as_raw_fd()));
                fds.extend(c.clients.iter().map(|cl| pollfd(cl.stream.as_raw_fd())));
            }
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if rc < 0 {
                continue;
            }
            if fds[1].revents != 0
                && let Some(name) = self.signals.read()
            {
                self.shared.finish(Outcome::signal(name));
                continue;
            }
            if fds.len() > 2 {
                let ready: Vec<usize> = fds[3..]
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.revents != 0)
                    .map(|(i, _)| i)
                    .collect();
                // Serve from the highest index down: a client that left is removed in place.
                for i in ready.into_iter().rev() {
                    self.serve_client(i);
                }
                if fds[2].revents != 0
                    && let Some(c) = &mut self.control
                {
                    c.accept();
                }
            }
        }
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
