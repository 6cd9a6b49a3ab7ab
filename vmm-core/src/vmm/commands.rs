//! The control commands (pause, resume, stats, shutdown, set_io_limit) a client sends over the
//! control socket (protocol in [`crate::control`]), answered on the main thread.

use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::Vmm;
use super::boot::EntryProtocol;
use super::outcome::Outcome;
use super::vstate::memory;
use super::vstate::vcpu::VcpuCommand;
use crate::control::{
    ControlRequest, ExitCounts, MemoryStats, Stats, VcpuStats, VmState, error_reply, ok_reply,
};

impl Vmm {
    pub(super) fn serve_client(&mut self, i: usize) {
        let Some(lines) = self.control.as_mut().and_then(|c| c.read_lines(i)) else {
            return;
        };
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let reply = match ControlRequest::parse(&line) {
                Ok(req) => self.handle(&req),
                Err(e) => error_reply(&e.to_string()),
            };
            if let Some(c) = self.control.as_mut() {
                c.reply(i, &reply);
            }
        }
    }

    fn handle(&mut self, req: &ControlRequest) -> String {
        match req {
            ControlRequest::Pause => match self.pause() {
                Ok(()) => ok_reply::<Stats>(None),
                Err(e) => error_reply(&e),
            },
            ControlRequest::Resume => {
                if self.paused {
                    for v in &self.vcpus {
                        v.command(VcpuCommand::Resume);
                    }
                    self.paused = false;
                }
                ok_reply::<Stats>(None)
            }
            ControlRequest::Stats => ok_reply(Some(&self.stats())),
            ControlRequest::Shutdown => {
                self.shared.finish(Outcome::shutdown());
                ok_reply::<Stats>(None)
            }
            ControlRequest::SetIoLimit { disk, bw, iops } => {
                let found = self.disks.iter().find(|d| {
                    d.index.to_string() == *disk || d.config.path.as_os_str() == disk.as_str()
                });
                match found {
                    Some(d) => {
                        d.set_limits(*bw, *iops);
                        if let Some(t) = &self.io_thread {
                            t.wake();
                        }
                        ok_reply::<Stats>(None)
                    }
                    None => error_reply(&format!(
                        "no disk `{disk}`: this VM has {} disk(s); name one by index (0..) or by path",
                        self.disks.len()
                    )),
                }
            }
        }
    }

    fn pause(&mut self) -> Result<(), String> {
        if self.paused {
            return Ok(());
        }
        while self.acks.try_recv().is_ok() {}
        for v in &self.vcpus {
            v.command(VcpuCommand::Pause);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut acked = 0;
        while acked < self.vcpus.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(_) => acked += 1,
                Err(_) => {
                    // Let the ones that did stop run again: a half-paused VM helps nobody.
                    for v in &self.vcpus {
                        v.command(VcpuCommand::Resume);
                    }
                    return Err(format!(
                        "only {acked} of {} vCPUs stopped within 5 s",
                        self.vcpus.len()
                    ));
                }
            }
        }
        self.paused = true;
        Ok(())
    }

    fn stats(&self) -> Stats {
        let ex = &self.shared.exits;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        Stats {
            state: if self.paused {
                VmState::Paused
            } else {
                VmState::Running
            },
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            vcpus: self
                .vcpus
                .iter()
                .map(|v| VcpuStats {
                    index: v.index,
                    tid: v.tid,
                    cpu_ns: v.cpu_ns(),
                })
                .collect(),
            io_tid: self.io_thread.as_ref().map(|t| t.tid),
            exits: ExitCounts {
                io: load(&ex.io),
                mmio: load(&ex.mmio),
                hlt: load(&ex.hlt),
                other: load(&ex.other),
            },
            memory: MemoryStats {
                guest_bytes: self.memory_bytes,
                resident_bytes: memory::resident_bytes(&self.mem),
            },
            progress: self.progress(),
            disks: self.disks.iter().map(|d| d.stats()).collect(),
            dropped: self.dropped.snapshot(),
        }
    }

    /// The workload guest's progress block: IO bytes plus the work units of every vCPU.
    fn progress(&self) -> u64 {
        let EntryProtocol::Colo(note) = self.protocol else {
            return 0;
        };
        let read = |addr: u64| self.mem.read_obj::<u64>(GuestAddress(addr)).unwrap_or(0);
        let mut total = read(note.progress + 8);
        for i in 0..self.vcpus.len() as u64 {
            total = total.wrapping_add(read(note.progress + 64 + 64 * i));
        }
        total
    }
}
