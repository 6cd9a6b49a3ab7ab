//! The offline side as the loop sees it: the live jobs, and the few operations the loop asks of
//! them. The job manager implements [`OfflineJobs`] where the agent wires its subsystems
//! together, so the loop depends on the host layer alone, and a new kind of sandbox changes the
//! job side only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use colo_config::job::{QosClass, ThrottleState};

use crate::host::cgroup::{CgroupTree, JobCgroup};

/// An operation that needs a round trip to the job's sandbox (its VMM or OCI runtime).
pub type OpFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// The offline jobs, shared by the loop, its enforcer and its operation worker.
pub type SharedJobs = Arc<dyn OfflineJobs>;

/// One live offline job: running or paused, with its cgroups found.
#[derive(Debug, Clone)]
pub struct OfflineJob {
    /// The job's id.
    pub id: String,
    /// Its vCPUs (or processes) are stopped.
    pub paused: bool,
    /// Its cgroups.
    pub cgroup: JobCgroup,
    /// Its QoS class.
    pub class: QosClass,
    /// Its priority within the class.
    pub priority: i32,
    /// vCPUs (a container's CPU cores).
    pub vcpus: u32,
    /// Guest memory (a container's memory limit), MiB.
    pub memory_mib: u64,
    /// Its virtio-blk disks (0 for a container).
    pub disks: usize,
    /// A container: its IO is limited in its cgroup and its CPU cores bound its quota.
    pub container: bool,
    /// How long it has run (since its start, or its creation when it has not started).
    pub age: Duration,
}

/// What the loop needs of the node's jobs.
pub trait OfflineJobs: Send + Sync + std::fmt::Debug {
    /// The agent's cgroup subtree.
    fn cgroups(&self) -> &CgroupTree;

    /// The jobs that run or are paused now.
    fn live(&self) -> Vec<OfflineJob>;

    /// Stops a job's vCPUs (freezes a container); resolves once they are stopped.
    fn pause<'a>(&'a self, job: &'a str, reason: &'a str) -> OpFuture<'a>;

    /// Restarts a paused job.
    fn resume<'a>(&'a self, job: &'a str, reason: &'a str) -> OpFuture<'a>;

    /// Sets the token buckets of a VM's first `disks` disks (0 = unlimited).
    fn set_disk_limits<'a>(
        &'a self,
        job: &'a str,
        disks: usize,
        bw: u64,
        iops: u64,
    ) -> OpFuture<'a>;

    /// Ends a job as preempted, for `reason`.
    fn evict(&self, job: &str, reason: &str) -> Result<(), String>;

    /// Records what the loop did to a job (shown by the API). A job that has gone is ignored.
    fn set_throttle(&self, job: &str, throttle: ThrottleState);

    /// How many jobs are in each state that has any, by the state's name (for the node report).
    fn jobs_by_state(&self) -> Vec<(String, u32)>;

    /// The sandbox kinds this node can run now, by name (for the node report).
    fn sandboxes(&self) -> Vec<String>;
}
