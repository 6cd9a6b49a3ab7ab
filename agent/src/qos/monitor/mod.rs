//! The QoS loop's signals: what the online services suffer and what the offline VMs use.
//!
//! Every reading feeds a rule of the policy engine (`colo_policy`) or the node report:
//!
//! | reading | source | feeds |
//! |---|---|---|
//! | online run delay | `/proc/<tid>/schedstat` of the service's threads | CPU squeeze (`run_delay`), node score |
//! | online wake-up delay (run delay ÷ time slices) | the same files | CPU squeeze (`wakeup_delay`) |
//! | PSI (system / per v2 cgroup) | `total` of `/proc/pressure/*`, `<cg>/*.pressure` | CPU, IO squeeze; memory evict |
//! | online CPU usage | `cpuacct.usage` / `cpu.stat` | the offline quota's target |
//! | node CPU busy | `/proc/stat` | the offline quota's target (daemons outside services) |
//! | offline CPU usage | `<root>/offline` cpuacct | the quota's target (busy − offline) |
//! | node memory | `/proc/meminfo` | memory eviction |
//! | online memory | `memory.stat` working set | reclaimable memory in reports |
//! | online disk latency, utilisation | `/proc/diskstats` of the disks it uses | IO squeeze |
//! | SLI p99 ÷ target | HTTP probe or `ReportSli` | CPU and IO squeeze |
//! | per-VM CPU, throttling, memory, IO | the job's cgroups | who to throttle, pause, evict first |
//!
//! Costs are kept per tick by reading kernel files with kept descriptors and buffers
//! ([`crate::host::statfile::StatFile`]); listings (threads, devices, selectors) and per-VM counters are
//! refreshed at slower cadences.

mod collector;
pub mod node;
pub mod psi;
pub mod psi_trigger;
mod readings;
pub mod selector;
pub mod sli;
pub mod tasks;
mod vm;

pub use collector::Collector;
pub use readings::{
    CollectorSettings, NodeReadings, OnlineReadings, Readings, ServiceSpec, VmReadings, VmSpec,
};

use std::path::{Path, PathBuf};

/// Errors of the monitors.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The kernel has PSI switched off (or compiled out).
    #[error("PSI is not available ({path}): {fix}")]
    PsiOff {
        /// The file that is missing or refuses reads.
        path: PathBuf,
        /// What to do.
        fix: &'static str,
    },
    /// A PSI trigger could not be armed.
    #[error("cannot arm PSI trigger {spec:?} on {path}: {error}; {fix}")]
    PsiTrigger {
        /// The pressure file.
        path: PathBuf,
        /// What was written.
        spec: String,
        /// The kernel's answer.
        error: String,
        /// What to do.
        fix: &'static str,
    },
    /// A kernel file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: String,
    },
}

impl MonitorError {
    pub(crate) fn read(path: &Path, e: std::io::Error) -> Self {
        Self::Read {
            path: path.to_path_buf(),
            error: e.to_string(),
        }
    }
}
