//! The loop's table of offline VMs: which jobs are live, their engine ids, what is static about
//! them (class, priority, size, start), and the limits they had when first seen (so a restarted
//! agent continues from what is applied).

use std::collections::HashMap;
use std::time::Duration;

use colo_config::policy::QosClassName;
use colo_policy::{VmId, VmLimits, VmRunState, VmSample};

use crate::host::cgroup::ThreadGroup;
use colo_config::job::QosClass;

use crate::qos::enforce::{VmLookup, VmTarget};
use crate::qos::monitor::VmSpec;
use crate::qos::offline::OfflineJobs;

/// One live VM.
#[derive(Debug, Clone)]
pub struct VmEntry {
    /// What the enforcer needs.
    pub target: VmTarget,
    /// The static part of its sample (usage fields are filled every tick).
    pub sample: VmSample,
}

/// The live VMs, in a stable order (by engine id).
#[derive(Debug, Default)]
pub struct VmTable {
    ids: HashMap<String, VmId>,
    next_id: u64,
    entries: Vec<VmEntry>,
    by_id: HashMap<VmId, usize>,
    specs: Vec<VmSpec>,
}

impl VmTable {
    /// The VMs.
    pub fn entries(&self) -> &[VmEntry] {
        &self.entries
    }

    /// What the collector watches, in the same order as [`entries`](Self::entries).
    pub fn specs(&self) -> &[VmSpec] {
        &self.specs
    }

    /// Re-reads the live jobs; returns whether the set changed. `now` is the loop's monotonic
    /// time (the engine's clock), used to place each VM's start on it.
    pub fn refresh(&mut self, jobs: &dyn OfflineJobs, now: Duration) -> bool {
        let live = jobs.live();
        let mut next: Vec<VmEntry> = Vec::with_capacity(live.len());
        for j in live {
            let state = if j.paused {
                VmRunState::Paused
            } else {
                VmRunState::Running
            };
            let id = *self.ids.entry(j.id.clone()).or_insert_with(|| {
                self.next_id += 1;
                VmId(self.next_id)
            });
            let known = self.by_id.get(&id).map(|&i| &self.entries[i]);
            let limits = match known {
                Some(e) => e.sample.limits,
                None => applied_limits(&j.cgroup),
            };
            let sample = VmSample {
                id,
                class: match j.class {
                    QosClass::Batch => QosClassName::Batch,
                    QosClass::Mid => QosClassName::Mid,
                },
                priority: j.priority,
                started_at: known
                    .map_or_else(|| now.saturating_sub(j.age), |e| e.sample.started_at),
                vcpus: j.vcpus,
                guest_memory: j.memory_mib << 20,
                state,
                limits,
                ..known.map(|e| e.sample).unwrap_or_default()
            };
            next.push(VmEntry {
                target: VmTarget {
                    job: j.id,
                    cgroup: j.cgroup,
                    disks: j.disks,
                    cgroup_io: j.container,
                    cores: j.container.then_some(f64::from(j.vcpus)),
                },
                sample,
            });
        }
        next.sort_by_key(|e| e.sample.id);
        let changed = next.len() != self.entries.len()
            || next
                .iter()
                .zip(&self.entries)
                .any(|(a, b)| a.sample.id != b.sample.id || a.sample.state != b.sample.state);
        self.entries = next;
        self.by_id = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.sample.id, i))
            .collect();
        let live: std::collections::HashSet<&str> =
            self.entries.iter().map(|e| e.target.job.as_str()).collect();
        self.ids.retain(|job, _| live.contains(job.as_str()));
        self.specs = self
            .entries
            .iter()
            .map(|e| VmSpec {
                key: e.sample.id.0,
                job: e.target.job.clone(),
            })
            .collect();
        changed
    }

    /// Every live VM's engine id and target.
    pub fn targets(&self) -> impl Iterator<Item = (VmId, &VmTarget)> {
        self.entries.iter().map(|e| (e.sample.id, &e.target))
    }

    /// Whether `vm` is live.
    pub fn contains(&self, vm: VmId) -> bool {
        self.by_id.contains_key(&vm)
    }

    /// Mutable access to the samples (the loop fills the usage fields).
    pub fn samples_mut(&mut self) -> impl Iterator<Item = &mut VmSample> {
        self.entries.iter_mut().map(|e| &mut e.sample)
    }

    /// The job of an engine id.
    pub fn job(&self, vm: VmId) -> Option<&str> {
        self.by_id
            .get(&vm)
            .map(|&i| self.entries[i].target.job.as_str())
    }
}

impl VmLookup for VmTable {
    fn target(&self, vm: VmId) -> Option<&VmTarget> {
        self.by_id.get(&vm).map(|&i| &self.entries[i].target)
    }
}

/// The limits in force on a VM's cgroups (read once, when the loop first sees it).
fn applied_limits(cg: &crate::host::cgroup::JobCgroup) -> VmLimits {
    let vcpu = cg.threads(ThreadGroup::Vcpu);
    let vcpu_quota = vcpu
        .cpu_quota()
        .ok()
        .and_then(|q| q.quota_us.map(|u| u as f64 / q.period_us.max(1) as f64));
    let sched_idle = vcpu
        .dirs()
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("cpu.idle")).ok())
        .is_some_and(|t| t.trim() == "1");
    VmLimits {
        vcpu_quota,
        sched_idle,
        ..VmLimits::default()
    }
}
