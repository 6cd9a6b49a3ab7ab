//! What the simulator replays: nodes, the online demand of every node at every step, and the
//! offline VMs that arrive.
//!
//! Two sources give the same shape: the seeded [`synthetic`] generator (computed on the fly, no
//! storage) and the compact [`binary`] file (written by `colo-sim generate` or converted from
//! the Alibaba CSVs, read in a stream one step at a time).

pub mod binary;
pub mod synthetic;

use crate::contention::{Capacity, OnlineDemand};

/// A node's hardware.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeSpec {
    /// CPU capacity in millicores.
    pub cpu_millicores: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk bandwidth in bytes per second.
    pub disk_bytes_per_sec: u64,
    /// True for a node of the dedicated batch pool (no online services).
    pub batch_pool: bool,
}

impl NodeSpec {
    /// The contention model's view of the node.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn capacity(&self) -> Capacity {
        Capacity::new(
            f64::from(self.cpu_millicores) / 1000.0,
            self.memory_bytes,
            self.disk_bytes_per_sec as f64,
        )
    }
}

/// Online demand of one node during one step, quantised (4 bytes; the binary format stores it
/// as is, and the synthetic generator quantises the same way, so both paths give identical
/// runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnlineSample {
    /// CPU in 1/10,000 of the node's cores (10,000 = the whole node).
    pub cpu: u16,
    /// Memory in 1/250 of the node's memory.
    pub memory: u8,
    /// Disk traffic in 1/250 of the node's disk bandwidth.
    pub io: u8,
}

/// Full scale of [`OnlineSample::cpu`].
pub const CPU_SCALE: f64 = 10_000.0;
/// Full scale of [`OnlineSample::memory`] and [`OnlineSample::io`].
pub const SHARE_SCALE: f64 = 250.0;

impl OnlineSample {
    /// Quantises shares of the node (CPU, memory, disk bandwidth; each clamped to 0..1).
    #[must_use]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn from_shares(cpu: f64, memory: f64, io: f64) -> Self {
        let q = |x: f64, scale: f64| {
            if x.is_nan() {
                0.0
            } else {
                x.clamp(0.0, 1.0) * scale + 0.5
            }
        };
        Self {
            cpu: q(cpu, CPU_SCALE) as u16,
            memory: q(memory, SHARE_SCALE) as u8,
            io: q(io, SHARE_SCALE) as u8,
        }
    }

    /// CPU as a share of the node, 0..1.
    #[must_use]
    pub fn cpu_share(self) -> f64 {
        f64::from(self.cpu) / CPU_SCALE
    }

    /// The demand in the contention model's units on a node of capacity `cap`.
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    pub fn demand(self, cap: &Capacity) -> OnlineDemand {
        const PER_CPU: f64 = 1.0 / CPU_SCALE;
        const PER_SHARE: f64 = 1.0 / SHARE_SCALE;
        OnlineDemand {
            cpu: cap.cores * (f64::from(self.cpu) * PER_CPU),
            memory_bytes: crate::float::to_u64(
                cap.memory_f64() * (f64::from(self.memory) * PER_SHARE),
            ),
            io_bytes_per_sec: cap.disk_bytes_per_sec * (f64::from(self.io) * PER_SHARE),
        }
    }
}

/// One offline VM to run (one colo offline job, i.e. one MicroVM; several may make up one
/// batch job).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VmSpec {
    /// Seconds since the start of the trace at which it is submitted.
    pub arrival_s: u32,
    /// The batch job it belongs to (job completion time spans its VMs).
    pub job: u32,
    /// CPU it requests from the scheduler, millicores.
    pub request_millicores: u32,
    /// Memory it requests (its guest memory), MiB.
    pub request_mib: u32,
    /// vCPUs.
    pub vcpus: u16,
    /// CPU its work uses when unthrottled, millicores.
    pub cpu_millicores: u32,
    /// Memory it actually touches, MiB.
    pub memory_mib: u32,
    /// Disk traffic at full speed, KiB/s.
    pub io_kib_per_sec: u32,
    /// Memory-bandwidth intensity, 0..255 (255 = streaming memory).
    pub membw: u8,
    /// Seconds of work at full speed.
    pub work_s: u32,
    /// The trace says it fails (at the end of its work).
    pub fails: bool,
}

impl VmSpec {
    /// The request as scoring sees it.
    #[must_use]
    pub fn request(&self) -> colo_policy::scoring::Resources {
        colo_policy::scoring::Resources::new(
            u64::from(self.request_millicores),
            u64::from(self.request_mib) << 20,
        )
    }
}

/// Trace-wide facts.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceInfo {
    /// Seconds per step.
    pub step_secs: u32,
    /// Number of steps.
    pub steps: u32,
    /// Every node.
    pub nodes: Vec<NodeSpec>,
    /// Where it came from (shown in reports).
    pub description: String,
}

/// Errors of reading or writing traces.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// An I/O error on a trace file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A binary trace file that is not one, or is damaged.
    #[error("{path}: {reason} (regenerate it with `colo-sim generate` or `colo-sim convert`)")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Bad generator parameters.
    #[error("synthetic trace: {0}")]
    Parameters(String),
}

/// A stream of online demand rows and VM arrivals, one step at a time.
pub trait TraceSource: Send {
    /// Trace-wide facts.
    fn info(&self) -> &TraceInfo;

    /// True when nodes compute their own online demand (synthetic); false when
    /// [`TraceSource::online_row`] provides it.
    fn online_is_generated(&self) -> bool;

    /// The synthetic online model, when [`TraceSource::online_is_generated`].
    fn synthetic(&self) -> Option<&synthetic::OnlineModel>;

    /// Fills `row` (one entry per node) with the online demand of `step`. Steps are asked for in
    /// order, each once. Not called when the online demand is generated.
    ///
    /// # Errors
    /// When the trace file cannot be read.
    fn online_row(&mut self, step: u32, row: &mut [OnlineSample]) -> Result<(), TraceError>;

    /// Appends the VMs arriving during `step` (arrival in `[step × step_secs, (step + 1) ×
    /// step_secs)`) to `out`, in trace order. Steps are asked for in order, each once.
    ///
    /// # Errors
    /// When the trace file cannot be read.
    fn arrivals(&mut self, step: u32, out: &mut Vec<VmSpec>) -> Result<(), TraceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_round_trips_within_resolution() {
        let s = OnlineSample::from_shares(0.123_456, 0.5, 1.7);
        assert_eq!(s.cpu, 1235);
        assert_eq!(s.memory, 125);
        assert_eq!(s.io, 250);
        let cap = Capacity::new(32.0, 1000, 1e9);
        let d = s.demand(&cap);
        assert!((d.cpu - 3.952).abs() < 1e-9);
        assert_eq!(d.memory_bytes, 500);
        assert!((d.io_bytes_per_sec - 1e9).abs() < 1e-3);
        assert_eq!(
            OnlineSample::from_shares(f64::NAN, -1.0, 0.0),
            OnlineSample::default()
        );
    }
}
