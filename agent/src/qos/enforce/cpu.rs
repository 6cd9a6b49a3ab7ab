//! CPU knobs: the offline group's CFS quota, each VM's vCPU quota, and SCHED_IDLE.
//!
//! cgroup v1 refuses (EINVAL) a child quota above its parent's and a parent quota below a
//! child's, so a VM's vCPU quota in force is `min(its own, the group's)`: when the group shrinks
//! the VMs above it are lowered first; when it grows they are raised after it. Writes happen only
//! when a value changes, and the period is written only when it changes (one write otherwise).
//!
//! SCHED_IDLE is applied twice: `cpu.idle = 1` on `<job>/vcpu`, and the SCHED_IDLE policy on
//! each vCPU thread. The second is the one that protects online tasks in other cgroups: the
//! kernel preempts a SCHED_IDLE *task* for any waking normal task, whereas a `cpu.idle` cgroup
//! only yields to its siblings under the same parent.

use std::time::Duration;

use crate::host::cgroup::{CgroupNode, CpuQuota};

fn quota_for(cores: f64, period: Duration) -> CpuQuota {
    let period_us = u64::try_from(period.as_micros())
        .unwrap_or(CpuQuota::MAX_PERIOD_US)
        .clamp(CpuQuota::MIN_PERIOD_US, CpuQuota::MAX_PERIOD_US);
    let millicores = (cores.max(0.0) * 1000.0).round() as u64;
    CpuQuota::from_millicores(millicores, period_us)
}

/// The smaller of two limits in cores (`None`: unlimited).
fn min_cores(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Writes `q` to `node`, the period only when it differs from `period_in_force`.
fn write_quota(
    node: &CgroupNode,
    q: CpuQuota,
    period_in_force: &mut Option<u64>,
) -> Result<(), String> {
    let r = if *period_in_force == Some(q.period_us) {
        node.set_cpu_quota_only(q)
    } else {
        node.set_cpu_quota(q)
    };
    r.map_err(|e| e.to_string())?;
    *period_in_force = Some(q.period_us);
    Ok(())
}

/// CPUs this node can run tasks on (the ceiling of any quota that can bind).
fn online_cpus() -> f64 {
    std::thread::available_parallelism().map_or(f64::INFINITY, |n| n.get() as f64)
}

/// The offline group's quota.
#[derive(Debug)]
pub(super) struct GroupCpu {
    node: CgroupNode,
    period_us: Option<u64>,
    applied: Option<CpuQuota>,
    /// A quota of this many cores or more cannot bind and is written as unlimited.
    cpus: f64,
}

impl GroupCpu {
    pub(super) fn new(node: CgroupNode) -> Self {
        Self::with_cpus(node, online_cpus())
    }

    /// As [`GroupCpu::new`] for a node with `cpus` CPUs.
    pub(super) fn with_cpus(node: CgroupNode, cpus: f64) -> Self {
        let applied = node.cpu_quota().ok();
        Self {
            period_us: applied.map(|q| q.period_us),
            node,
            applied,
            cpus,
        }
    }

    /// The quota in force, cores (`None`: unlimited).
    pub(super) fn applied_cores(&self) -> Option<f64> {
        self.applied
            .and_then(|q| q.quota_us.map(|u| u as f64 / q.period_us.max(1) as f64))
    }

    /// The cap it puts on a child's quota, cores.
    pub(super) fn cap_cores(&self) -> Option<f64> {
        self.applied_cores()
    }

    /// Sets the group to `cores`, keeping the VMs' quotas at or below it.
    pub(super) fn set(
        &mut self,
        cores: f64,
        period: Duration,
        vms: Vec<&mut VmCpu>,
    ) -> Result<(), String> {
        // A quota at or above every CPU the node has cannot bind: it is written as unlimited,
        // so that no CFS bandwidth timer runs and no slice accounting throttles the VMs for
        // nothing (the policy's "no squeeze" quota is the whole node when no budget is set).
        let unbinding = cores >= self.cpus - 1e-6;
        let q = if unbinding {
            CpuQuota::unlimited(quota_for(1.0, period).period_us)
        } else {
            quota_for(cores, period)
        };
        if self.applied == Some(q) {
            return Ok(());
        }
        let cap = (!unbinding).then_some(cores);
        let lower = match (self.applied_cores(), q.quota_us) {
            (Some(old), Some(_)) => cores < old,
            (None, Some(_)) => true,
            _ => false,
        };
        let mut vms = vms;
        if lower {
            for v in vms.iter_mut() {
                v.reapply(cap)?;
            }
        }
        write_quota(&self.node, q, &mut self.period_us)?;
        self.applied = Some(q);
        if !lower {
            for v in vms.iter_mut() {
                v.reapply(cap)?;
            }
        }
        Ok(())
    }
}

/// One VM's vCPU cgroup (`<job>/vcpu`).
#[derive(Debug)]
pub(super) struct VmCpu {
    node: CgroupNode,
    period_us: Option<u64>,
    /// What the engine wants (cores, period); `None` cores: unlimited.
    intended: Option<(Option<f64>, Duration)>,
    applied: Option<CpuQuota>,
    idle: Option<bool>,
    /// The job's own cores (a container's `vcpus`): no quota in force ever exceeds it, and
    /// "unlimited" means this.
    ceiling: Option<f64>,
}

/// The CFS period of a job's own cores limit.
const CEILING_PERIOD: Duration = Duration::from_millis(100);

impl VmCpu {
    pub(super) fn new(node: CgroupNode) -> Self {
        let applied = node.cpu_quota().ok();
        Self {
            period_us: applied.map(|q| q.period_us),
            node,
            intended: None,
            applied,
            idle: None,
            ceiling: None,
        }
    }

    /// Bounds every later quota by the job's own `cores` (nothing is written now).
    pub(super) fn bound_by(&mut self, cores: f64) {
        self.ceiling = Some(cores);
    }

    /// Bounds the quota by the job's own `cores` from now on and writes it (capped at the
    /// group's `cap`).
    pub(super) fn set_ceiling(&mut self, cores: f64, cap: Option<f64>) -> Result<(), String> {
        self.ceiling = Some(cores);
        self.reapply(cap)
    }

    /// Sets the VM's quota to `cores` (capped at the group's `cap`).
    pub(super) fn set(
        &mut self,
        cores: Option<f64>,
        period: Duration,
        cap: Option<f64>,
    ) -> Result<(), String> {
        self.intended = Some((cores, period));
        self.reapply(cap)
    }

    /// Writes `min(intended, cap)` if it differs from what is in force.
    pub(super) fn reapply(&mut self, cap: Option<f64>) -> Result<(), String> {
        let (cores, period) = match (self.intended, self.ceiling) {
            (Some((c, p)), ceiling) => (min_cores(c, ceiling), p),
            (None, Some(ceiling)) => (Some(ceiling), CEILING_PERIOD),
            // Never set by the engine: only lower an unlimited child when the kernel needs it
            // (v1 accepts an unlimited child under any parent).
            (None, None) => return Ok(()),
        };
        // An unlimited child is accepted under any parent (v1 too): the cap bounds only a
        // quota.
        let eff = cores.map(|c| cap.map_or(c, |g| c.min(g)));
        let q = match eff {
            Some(c) => quota_for(c, period),
            None => CpuQuota::unlimited(quota_for(1.0, period).period_us),
        };
        if self.applied == Some(q) {
            return Ok(());
        }
        write_quota(&self.node, q, &mut self.period_us)?;
        self.applied = Some(q);
        Ok(())
    }

    /// `cpu.idle` on the vCPU cgroup and SCHED_IDLE on each vCPU thread; fails when no vCPU
    /// thread took the policy.
    pub(super) fn set_idle(&mut self, idle: bool) -> Result<(), String> {
        // Kernels before 5.15 have no cpu.idle; the thread policy is the layer that matters.
        let cg = self.node.set_cpu_idle(idle).err();
        let tids = self.node.thread_ids();
        let (ok, failed) = apply_sched_idle_threads(&tids, idle);
        self.idle = Some(idle);
        if ok == 0 {
            let cg = cg.map(|e| format!("; cpu.idle: {e}")).unwrap_or_default();
            return Err(format!(
                "no vCPU thread took SCHED_IDLE={idle} ({} listed, {failed} refused{cg})",
                tids.len()
            ));
        }
        if let Some(e) = cg {
            tracing::debug!(target: "colo::qos", error = %e, "cpu.idle not set; SCHED_IDLE threads are");
        }
        Ok(())
    }
}

/// Sets (or clears, back to SCHED_OTHER) the SCHED_IDLE policy of one thread.
pub fn set_thread_sched_idle(tid: u32, idle: bool) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let tid = libc::pid_t::try_from(tid)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: sched_setscheduler reads the param struct we own; it affects only thread `tid`.
    let rc = unsafe { libc::sched_setscheduler(tid, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Applies SCHED_IDLE (or SCHED_OTHER) to each of `tids`; returns (done, failed). Threads that
/// exited meanwhile count as failed.
pub fn apply_sched_idle_threads(tids: &[u32], idle: bool) -> (usize, usize) {
    let mut ok = 0;
    let mut failed = 0;
    for &t in tids {
        match set_thread_sched_idle(t, idle) {
            Ok(()) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_round_to_the_kernel_minimum() {
        let q = quota_for(0.05, Duration::from_millis(10));
        assert_eq!(
            q,
            CpuQuota {
                quota_us: Some(1_000),
                period_us: 10_000
            }
        );
        let q = quota_for(1.5, Duration::from_millis(10));
        assert_eq!(q.quota_us, Some(15_000));
        let q = quota_for(1.0, Duration::from_micros(10));
        assert_eq!(q.period_us, CpuQuota::MIN_PERIOD_US);
    }

    /// A real cgroup tree in a test subtree of its own (with the host lock), or `None` when not
    /// root (said loudly).
    fn real_tree(
        test: &str,
    ) -> Option<(
        colo_testkit::HostLock,
        colo_testkit::TestCgroup,
        crate::host::cgroup::CgroupTree,
    )> {
        use crate::host::cgroup::{CgroupSettings, CgroupTree};
        if !colo_testkit::root_or_skip(test) {
            return None;
        }
        let lock = colo_testkit::host_lock();
        let cg = colo_testkit::TestCgroup::new(&["pids", "cpu", "cpuacct", "blkio"], 256 << 20)
            .expect("test cgroup");
        let settings = CgroupSettings {
            root: Some(std::path::PathBuf::from(cg.name())),
            // The test process stays put: moved into the test cgroup (v2's default for the
            // agent), it would be killed with it when the test cgroup is removed.
            move_self: Some(false),
            ..Default::default()
        };
        let tree = CgroupTree::open(&settings).expect("open tree");
        Some((lock, cg, tree))
    }

    /// On v1 the kernel refuses a child quota above its parent's: the group and a VM move in
    /// the order that keeps every write valid, and the VM's quota in force is min(own, group).
    #[test]
    fn group_and_vm_quotas_keep_the_parent_above_the_child() {
        use crate::host::cgroup::{JobLimits, JobShape, ThreadGroup};
        let Some((_lock, _test, tree)) =
            real_tree("group_and_vm_quotas_keep_the_parent_above_the_child")
        else {
            return;
        };
        let job = tree
            .create_job("j1", JobShape::Vmm, &JobLimits::default())
            .expect("job");
        let p = Duration::from_millis(10);
        // As on an 8-CPU node, so that 2 cores is a quota that can bind.
        let mut group = GroupCpu::with_cpus(tree.offline(), 8.0);
        let mut vm = VmCpu::new(job.threads(ThreadGroup::Vcpu).clone());
        let q = |n: &CgroupNode| n.cpu_quota().unwrap();
        vm.set(Some(1.5), p, group.cap_cores()).unwrap();
        assert_eq!(
            q(job.threads(ThreadGroup::Vcpu)),
            CpuQuota {
                quota_us: Some(15_000),
                period_us: 10_000
            }
        );
        // Lowering the group below the VM lowers the VM first (v1 would refuse the group write).
        group.set(1.0, p, vec![&mut vm]).unwrap();
        assert_eq!(q(&tree.offline()).quota_us, Some(10_000));
        assert_eq!(q(job.threads(ThreadGroup::Vcpu)).quota_us, Some(10_000));
        assert_eq!(group.applied_cores(), Some(1.0));
        // Raising the group gives the VM its own quota back.
        group.set(2.0, p, vec![&mut vm]).unwrap();
        assert_eq!(q(&tree.offline()).quota_us, Some(20_000));
        assert_eq!(q(job.threads(ThreadGroup::Vcpu)).quota_us, Some(15_000));
        // A VM asking for more than the group gets the group's.
        vm.set(Some(3.0), p, group.cap_cores()).unwrap();
        assert_eq!(q(job.threads(ThreadGroup::Vcpu)).quota_us, Some(20_000));
        vm.set(None, p, group.cap_cores()).unwrap();
        assert_eq!(q(job.threads(ThreadGroup::Vcpu)).quota_us, None);
        // A group quota of every CPU the node has cannot bind: it is written as unlimited, and
        // a VM capped by the group before gets its own quota back.
        vm.set(Some(1.5), p, group.cap_cores()).unwrap();
        group.set(1.0, p, vec![&mut vm]).unwrap();
        assert_eq!(q(job.threads(ThreadGroup::Vcpu)).quota_us, Some(10_000));
        group.set(8.0, p, vec![&mut vm]).unwrap();
        assert_eq!(q(&tree.offline()).quota_us, None);
        assert_eq!(group.applied_cores(), None);
        assert_eq!(q(job.threads(ThreadGroup::Vcpu)).quota_us, Some(15_000));
        job.remove(Duration::from_secs(1)).unwrap();
    }

    /// A container's own cores bound its vCPU cgroup under the group: the cap wins when lower,
    /// a release goes back to the cores (never unlimited), a squeeze goes below them.
    #[test]
    fn a_containers_cores_bound_its_quota_under_the_group() {
        use crate::host::cgroup::{JobLimits, JobShape, ThreadGroup};
        let Some((_lock, _test, tree)) =
            real_tree("a_containers_cores_bound_its_quota_under_the_group")
        else {
            return;
        };
        let job = tree
            .create_job("c1", JobShape::Container, &JobLimits::default())
            .expect("job");
        let node = job.threads(ThreadGroup::Vcpu).clone();
        let cores = |n: &CgroupNode| {
            let q = n.cpu_quota().unwrap();
            q.quota_us.map(|u| u as f64 / q.period_us as f64)
        };
        let p = Duration::from_millis(100);
        let mut group = GroupCpu::with_cpus(tree.offline(), 8.0);
        let mut vm = VmCpu::new(node.clone());
        group.set(0.5, p, vec![&mut vm]).unwrap();
        vm.set_ceiling(1.0, group.cap_cores()).unwrap();
        assert_eq!(cores(&node), Some(0.5), "the group's cap is lower");
        group.set(2.0, p, vec![&mut vm]).unwrap();
        assert_eq!(cores(&node), Some(1.0), "the job's own cores");
        vm.set(Some(0.3), p, group.cap_cores()).unwrap();
        assert_eq!(cores(&node), Some(0.3), "a squeeze goes below them");
        vm.set(None, p, group.cap_cores()).unwrap();
        assert_eq!(cores(&node), Some(1.0), "a release goes back to the cores");
        // With the group lowered below the job's cores, both writes stay valid on v1.
        group.set(0.25, p, vec![&mut vm]).unwrap();
        assert_eq!(cores(&node), Some(0.25));
    }

    #[test]
    fn a_thread_of_ours_goes_idle_and_back() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = u32::try_from(rx.recv().unwrap()).unwrap();
        let policy = |tid: u32| {
            let t = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // Field 41 (policy), counted after the comm's closing parenthesis.
            let rest = &t[t.rfind(')').unwrap() + 2..];
            rest.split_whitespace()
                .nth(38)
                .unwrap()
                .parse::<i32>()
                .unwrap()
        };
        set_thread_sched_idle(tid, true).unwrap();
        assert_eq!(policy(tid), libc::SCHED_IDLE);
        set_thread_sched_idle(tid, false).unwrap();
        assert_eq!(policy(tid), libc::SCHED_OTHER);
        assert_eq!(apply_sched_idle_threads(&[tid, u32::MAX - 1], true), (1, 1));
        set_thread_sched_idle(tid, false).unwrap();
        done_tx.send(()).unwrap();
        h.join().unwrap();
    }
}
