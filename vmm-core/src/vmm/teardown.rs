//! The end of a VM: stop its threads, flush its output, log why it ended and write the exit
//! record.

use super::capped_output::DroppedCounters;
use super::log::Logger;
use super::outcome::Outcome;
use super::vstate::vcpu::VcpuCommand;
use super::{VmConfig, Vmm};

impl Vmm {
    /// Writes out serial output, the log line and the exit record; returns the exit status.
    pub(super) fn finish(self, cfg: &VmConfig, logger: &Logger, outcome: &Outcome) -> i32 {
        self.trace.mark("VM ended");
        // Stop the guest first, so nothing it does after its end reaches the serial output.
        for v in &self.vcpus {
            v.command(VcpuCommand::Stop);
        }
        if let Some(t) = &self.io_thread {
            t.stop();
        }
        if let Some(t) = &self.channel {
            t.stop();
        }
        self.shared.devices().flush();
        let dropped = self.dropped.snapshot();
        if dropped.any() {
            logger.line(&format!(
                "output over --log-limit {}: dropped {} bytes of serial output, {} of this log \
                 (oldest first; the rest is in PATH and PATH.1), {} of stderr (newest first)",
                cfg.log_limit.unwrap_or(0),
                dropped.serial,
                dropped.log,
                dropped.stderr
            ));
        }
        logger.line(&format!(
            "{}: {} (exit status {})",
            outcome.reason.as_str(),
            outcome.message,
            outcome.exit_code
        ));
        write_record(cfg, logger, outcome, &self.dropped);
        if let Some(c) = &self.control {
            c.remove();
        }
        if let Some(p) = &cfg.channel {
            let _ = std::fs::remove_file(p);
        }
        self.trace.mark("exit record written");
        outcome.exit_code
    }
}

/// Writes the exit record, when `--exit-record` asked for one.
pub(super) fn write_record(
    cfg: &VmConfig,
    logger: &Logger,
    outcome: &Outcome,
    dropped: &DroppedCounters,
) {
    let Some(path) = &cfg.exit_record else {
        return;
    };
    let record = outcome.exit_record(process_cpu_seconds(), dropped.snapshot());
    if let Err(e) = record.write_atomic(path) {
        logger.line(&format!("error: {e}"));
    }
}

/// User + system CPU time of this process (all threads), seconds.
fn process_cpu_seconds() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded and filled the struct.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
