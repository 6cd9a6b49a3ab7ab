//! The worker that runs VM operations needing a control-socket round trip (pause, resume, IO
//! token buckets) in order, off the loop.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::qos::offline::SharedJobs;

/// One operation.
#[derive(Debug)]
pub(super) enum VmOp {
    /// Stop the vCPUs.
    Pause { job: String, reason: String },
    /// Restart them.
    Resume { job: String, reason: String },
    /// Set every disk's token buckets (0 = unlimited).
    IoLimit {
        job: String,
        disks: usize,
        bw: u64,
        iops: u64,
    },
}

/// The sending side; the worker ends when it is dropped.
#[derive(Debug)]
pub(super) struct VmOps {
    tx: mpsc::UnboundedSender<VmOp>,
}

impl VmOps {
    pub(super) fn spawn(jobs: SharedJobs) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<VmOp>();
        tokio::spawn(async move {
            while let Some(op) = rx.recv().await {
                let t = Instant::now();
                let (what, job, r) = match op {
                    VmOp::Pause { job, reason } => {
                        let r = jobs.pause(&job, &reason).await;
                        ("pause_vm", job, r)
                    }
                    VmOp::Resume { job, reason } => {
                        let r = jobs.resume(&job, &reason).await;
                        ("resume_vm", job, r)
                    }
                    VmOp::IoLimit {
                        job,
                        disks,
                        bw,
                        iops,
                    } => {
                        let r = jobs.set_disk_limits(&job, disks, bw, iops).await;
                        ("set_vm_io_limit", job, r)
                    }
                };
                let took = t.elapsed();
                match r {
                    Ok(()) if took > super::SLOW_VM_OP => {
                        tracing::warn!(target: "colo::qos", job = %job, action = what, took_ms = took.as_millis() as u64, "slow VM operation");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        metrics::counter!(super::METRIC_ERRORS, "action" => what).increment(1);
                        tracing::warn!(target: "colo::qos", job = %job, action = what, error = %e, "VM operation failed");
                    }
                }
            }
        });
        Self { tx }
    }

    pub(super) fn send(&self, op: VmOp) {
        // The worker lives as long as the runtime: a closed channel means shutdown.
        let _ = self.tx.send(op);
    }
}
