//! The QoS loop: every `loop.period` (50 ms by default), and at once when a PSI trigger fires,
//! read the signals ([`monitor`]), let the policy engine decide ([`colo_policy::Engine`])
//! and apply its actions ([`enforce`]).
//!
//! Cost: one tick reads a few kernel files with kept descriptors, runs the engine (no
//! allocation once its buffers have grown) and writes only what changes. Job listings, thread
//! listings and per-VM counters are refreshed at slower cadences.

pub mod enforce;
pub mod monitor;
pub mod offline;
pub mod policy_store;
pub mod report;
mod snapshot;
mod summary;
pub mod view;
mod vms;
mod wait;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use colo_config::AgentConfig;
use colo_config::agent::SliSource;
use colo_config::policy::Mode;
use colo_policy::scoring::Resources;
use colo_policy::{Engine, NodeSample, OnlineSample, VmRunState};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::host::cgroup::{CgroupTree, DeviceNumber};
use enforce::Enforcer;
use monitor::sli::{ProbeTarget, SliWindow, run_probe};
use monitor::{Collector, CollectorSettings, Readings, ServiceSpec, psi_trigger};
use policy_store::PolicyStore;
use report::ReportSink;
use view::{QosView, SliInbox};

pub use offline::{OfflineJob, OfflineJobs, OpFuture, SharedJobs};
pub use snapshot::{LatestSnapshot, NodeSnapshot};
pub use summary::Summary;
pub use vms::{VmEntry, VmTable};

/// Histogram of one tick's duration (read, decide, apply), seconds.
pub const METRIC_TICK: &str = "colo_qos_tick_seconds";
/// Counter of ticks, by `cause` (`timer`, `psi`).
pub const METRIC_TICKS: &str = "colo_qos_ticks_total";

/// How often the job list is re-read.
const JOB_REFRESH: Duration = Duration::from_millis(200);
/// How often the view for NodeStatus / `coloctl node` is published.
const VIEW_EVERY: Duration = Duration::from_secs(1);

/// Errors that stop the loop from starting.
#[derive(Debug, thiserror::Error)]
pub enum QosError {
    /// The monitors could not start.
    #[error(transparent)]
    Monitor(#[from] monitor::MonitorError),
}

/// What the loop shares with the rest of the agent.
#[derive(Debug, Clone)]
pub struct QosShared {
    /// For NodeStatus.
    pub view: Arc<RwLock<QosView>>,
    /// Pushed SLI values.
    pub sli: Arc<SliInbox>,
    /// Latest 1 s summary (for the reporter and tests).
    pub summary: Arc<RwLock<Summary>>,
    /// The node's latest report and usage, always published (NodeStatus, Koordinator view).
    pub latest: LatestSnapshot,
    /// Where node reports go (colo-scheduler), if configured.
    pub reporter: Option<Arc<dyn ReportSink>>,
    /// The node's name in reports.
    pub node_name: String,
}

/// What the collector reads: the hierarchies the cgroup tree was opened on (so the loop
/// follows `cgroup.version` and `cgroup.mount` as the job side does) and the disk of the state
/// directory as the offline side's default disk.
fn collector_settings(tree: &CgroupTree, state_disk: Option<(u32, u32)>) -> CollectorSettings {
    let offline = tree.root().join("offline");
    let mut cs = CollectorSettings::new(tree.hierarchies().clone(), offline);
    if state_disk.is_some() {
        cs.default_disk = state_disk;
    }
    cs
}

/// Starts the loop on the current runtime; it ends when `stop` turns true.
pub fn spawn(
    config: &AgentConfig,
    jobs: SharedJobs,
    policy: PolicyStore,
    shared: QosShared,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, QosError> {
    let state_disk = monitor::node::disk_of(&config.offline.state_dir);
    let cs = collector_settings(jobs.cgroups(), state_disk);
    let mut collector = Collector::new(cs)?;
    let mut services = Vec::new();
    let mut probes = Vec::new();
    let mut pushed = Vec::new();
    // Each pushed service's p99 target (µs): a pushed batch that breaches it wakes the loop.
    let mut pushed_targets = std::collections::HashMap::new();
    for (i, s) in config.services.iter().enumerate() {
        let sli = s.slo.as_ref().map(|slo| {
            let window_len = match &slo.sli {
                SliSource::Probe(p) => (p.interval * 20).max(Duration::from_secs(1)),
                SliSource::Pushed => Duration::from_secs(1),
            };
            let w = Arc::new(std::sync::Mutex::new(SliWindow::new(window_len)));
            match &slo.sli {
                SliSource::Probe(p) => match ProbeTarget::parse(&p.url) {
                    Ok(t) => probes.push((t, p.interval, p.timeout, w.clone())),
                    Err(e) => tracing::error!(service = %s.name, error = %e, "SLI probe disabled"),
                },
                SliSource::Pushed => {
                    pushed.push((s.name.clone(), w.clone()));
                    pushed_targets.insert(
                        s.name.clone(),
                        u64::try_from(slo.p99.as_micros()).unwrap_or(u64::MAX),
                    );
                }
            }
            (slo.p99, w)
        });
        services.push(ServiceSpec {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            name: s.name.clone(),
            selector: s.selector.clone(),
            sli,
        });
    }
    collector.set_services(services);
    for (t, interval, timeout, w) in probes {
        tokio::spawn(run_probe(t, interval, timeout, w, stop.clone()));
    }
    let wake = Arc::new(Notify::new());
    if config.qos_loop.psi_triggers {
        arm_triggers(config, &collector, &wake);
    }
    let io_devices = state_disk
        .map(|(major, minor)| DeviceNumber { major, minor })
        .into_iter()
        .collect();
    let enforcer = Enforcer::new(jobs.clone(), io_devices);
    let budget = config.offline.budget.cpu.map(|c| c.get());
    let period = config.qos_loop.period;
    // The loop runs on its own thread; two small tasks forward PSI wake-ups and the stop to it.
    let signal = Arc::new(wait::Signal::default());
    if !pushed_targets.is_empty() {
        // A pushed batch that breaches its service's SLO wakes the loop at once.
        let signal = signal.clone();
        shared
            .sli
            .arm(pushed_targets, Box::new(move || signal.sli()));
    }
    {
        let signal = signal.clone();
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                signal.psi();
            }
        });
    }
    {
        let (mut stop, guard) = (stop, wait::StopOnDrop(signal.clone()));
        // The guard stops the loop also when this task is dropped (runtime shutdown), so the
        // runtime never waits on a loop thread that nobody stops.
        tokio::spawn(async move {
            let _guard = guard;
            let _ = stop.changed().await;
        });
    }
    Ok(tokio::task::spawn_blocking(move || {
        run(
            LoopState {
                collector,
                enforcer,
                engine: None,
                jobs,
                policy,
                shared,
                pushed,
                budget,
                period,
                vms: VmTable::default(),
                sample: NodeSample::default(),
                actions: Vec::new(),
                summary: Summary::default(),
                admission: colo_policy::scoring::Admission::Accepting,
            },
            &signal,
        )
    }))
}

/// PSI triggers on the system files (and on each service's v2 cgroup files) wake the loop.
fn arm_triggers(config: &AgentConfig, collector: &Collector, wake: &Arc<Notify>) {
    let l = &config.qos_loop;
    let mut files = Vec::new();
    if collector.has_system_psi() {
        for r in monitor::psi::RESOURCES {
            files.push(Path::new("/proc/pressure").join(r));
        }
    }
    for f in files {
        match psi_trigger::arm(&f, l.psi_trigger_stall, l.psi_trigger_window) {
            Ok(t) => {
                tracing::info!(path = %t.path.display(), stall = ?t.stall, window = ?t.window, "PSI trigger armed");
                tokio::spawn(t.forward(wake.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "PSI trigger not armed; the periodic loop still runs")
            }
        }
    }
}

struct LoopState {
    collector: Collector,
    enforcer: Enforcer,
    engine: Option<(Engine, Arc<policy_store::LoadedPolicy>)>,
    jobs: SharedJobs,
    policy: PolicyStore,
    shared: QosShared,
    pushed: Vec<(String, monitor::sli::SharedWindow)>,
    budget: Option<f64>,
    period: Duration,
    vms: VmTable,
    sample: NodeSample,
    actions: Vec<colo_policy::Action>,
    summary: Summary,
    admission: colo_policy::scoring::Admission,
}

fn run(mut s: LoopState, signal: &wait::Signal) {
    let start = Instant::now();
    let (mut next_jobs, mut next_view) = (start, start);
    // Metric handles looked up once: a lookup hashes the name and labels at every tick.
    let ticks_timer = metrics::counter!(METRIC_TICKS, "cause" => "timer");
    let ticks_psi = metrics::counter!(METRIC_TICKS, "cause" => "psi");
    let ticks_sli = metrics::counter!(METRIC_TICKS, "cause" => "sli");
    let tick_seconds = metrics::histogram!(METRIC_TICK);
    tracing::info!(period = ?s.period, "QoS loop running");
    let mut due = start;
    loop {
        let woken = signal.wait_until(due);
        let now = Instant::now();
        match woken {
            wait::Woken::Timer => {
                ticks_timer.increment(1);
                due = wait::next_deadline(due, now, s.period);
            }
            wait::Woken::Psi => {
                // The period restarts from the early tick.
                ticks_psi.increment(1);
                due = now + s.period;
            }
            wait::Woken::Sli => {
                ticks_sli.increment(1);
                due = now + s.period;
            }
            wait::Woken::Stop => break,
        }
        s.follow_policy();
        let mono = now.saturating_duration_since(start);
        if now >= next_jobs {
            next_jobs = now + JOB_REFRESH;
            if s.vms.refresh(s.jobs.as_ref(), mono) {
                s.collector.set_vms(s.vms.specs());
                let vms = &s.vms;
                s.enforcer.retain(|id| vms.contains(id));
                s.enforcer.bound_new(vms.targets());
            }
        }
        // Pushed values are taken at the first tick after they arrive.
        if !s.pushed.is_empty() && s.shared.sli.take_pending() {
            for (name, w) in &s.pushed {
                let values = s.shared.sli.drain(name);
                if !values.is_empty() {
                    let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                    for v in values {
                        w.push(now, Duration::from_micros(v));
                    }
                }
            }
        }
        s.tick(now, mono);
        tick_seconds.record(now.elapsed().as_secs_f64());
        if now >= next_view {
            next_view = now + VIEW_EVERY;
            s.publish();
        }
    }
    tracing::info!("QoS loop stopped");
}

impl LoopState {
    /// Builds the engine at start and again whenever the policy in force changes.
    fn follow_policy(&mut self) {
        let cur = self.policy.current();
        let stale = self
            .engine
            .as_ref()
            .is_none_or(|(_, p)| !Arc::ptr_eq(p, &cur));
        if !stale {
            return;
        }
        match &mut self.engine {
            Some((e, p)) => {
                e.set_policy(&cur.policy);
                *p = cur.clone();
            }
            None => self.engine = Some((Engine::new(&cur.policy), cur.clone())),
        }
        self.enforcer.set_observe(cur.policy.mode == Mode::Observe);
        tracing::info!(mode = %cur.mode, hash = %cur.hash, "QoS loop follows the policy");
    }

    fn tick(&mut self, now: Instant, mono: Duration) {
        let r = self.collector.tick(now);
        fill_sample(
            &mut self.sample,
            r,
            self.budget,
            self.enforcer.offline_quota(),
            mono,
        );
        // Usage of each VM, in the table's order (the collector follows it).
        self.sample.vms.clear();
        for (e, v) in self.vms.samples_mut().zip(r.vms.iter()) {
            e.cpu_usage = v.cpu;
            e.throttled = v.throttled;
            e.memory_usage = v.memory;
            e.io_bytes_per_sec = v.io_bytes_per_sec;
            e.io_ops_per_sec = v.io_ops_per_sec;
            self.sample.vms.push(*e);
        }
        self.summary.add(&self.sample, r.node.interval_s);
        let Some((engine, _)) = self.engine.as_mut() else {
            return;
        };
        engine.step(&self.sample, &mut self.actions);
        if !self.actions.is_empty() {
            self.enforcer.apply(&self.actions, &self.vms);
            // Keep the table's limits in step so a later refresh does not lose them.
            for a in &self.actions {
                if let colo_policy::Action::PauseVm { vm, .. }
                | colo_policy::Action::ResumeVm { vm, .. } = a
                    && let Some(e) = self.vms.samples_mut().find(|e| e.id == *vm)
                {
                    e.state = if matches!(a, colo_policy::Action::PauseVm { .. }) {
                        VmRunState::Paused
                    } else {
                        VmRunState::Running
                    };
                }
            }
        }
    }

    /// Publishes the 1 s summary, the view for NodeStatus, the node's snapshot and (if
    /// configured) the node report to colo-scheduler.
    fn publish(&mut self) {
        let params = self
            .engine
            .as_ref()
            .map(|(_, p)| colo_policy::scoring::ScoringParams::from(&p.policy.scoring))
            .unwrap_or_default();
        let sum = self.summary.take(&params.interference);
        let quota = self.enforcer.offline_quota();
        {
            let mut v = self.shared.view.write().unwrap_or_else(|p| p.into_inner());
            v.interference_score = sum.interference_score;
            v.offline_cpu_quota_millicores = quota.map_or(0, millicores);
        }
        let offline_memory: u64 = self.sample.vms.iter().map(|v| v.memory_usage).sum();
        let inputs = report::NodeInputs {
            node_name: self.shared.node_name.clone(),
            capacity: Resources::new(millicores(sum.capacity), sum.memory_total),
            online_usage: Resources::new(millicores(sum.online_cpu), sum.online_memory),
            offline_usage: Resources::new(millicores(sum.offline_cpu), offline_memory),
            signals: sum.signals(),
            jobs_by_state: self.jobs.jobs_by_state().into_iter().collect(),
            sandboxes: self.jobs.sandboxes(),
        };
        let (report, admission) = report::node_report(&inputs, &params, self.admission);
        self.admission = admission;
        if let Some(reporter) = &self.shared.reporter {
            reporter.publish(report.clone());
        }
        self.shared.latest.publish(NodeSnapshot {
            report,
            node_usage: colo_proto::report::Resources {
                cpu_millicores: millicores(sum.node_cpu),
                memory_bytes: sum.memory_used,
            },
        });
        *self
            .shared
            .summary
            .write()
            .unwrap_or_else(|p| p.into_inner()) = sum;
    }
}

fn millicores(cores: f64) -> u64 {
    if cores.is_finite() {
        (cores.max(0.0) * 1000.0).round() as u64
    } else {
        0
    }
}

/// Fills the node and online parts of `s` from the readings (no allocation once grown).
fn fill_sample(
    s: &mut NodeSample,
    r: &Readings,
    budget: Option<f64>,
    quota: Option<f64>,
    now: Duration,
) {
    let n = &r.node;
    s.now = now;
    s.node.cpu_capacity = n.cpu_capacity;
    s.node.cpu_usage = n.cpu_busy;
    s.node.offline_cpu_usage = n.offline_cpu;
    s.node.offline_cpu_budget = budget.unwrap_or(n.cpu_capacity);
    s.node.offline_cpu_quota = quota;
    s.node.memory_total = n.memory_total;
    s.node.memory_used = n.memory_used;
    s.node.psi = n.psi;
    s.online.clear();
    for o in &r.online {
        s.online.push(OnlineSample {
            service: o.service,
            cpu_usage: o.cpu,
            run_delay: o.run_delay,
            wakeup_delay: o.wakeup_delay,
            psi: o.psi,
            memory_usage: o.memory,
            io_latency: o.io_latency,
            io_utilisation: o.io_utilisation,
            sli_ratio: o.sli_ratio,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::host::cgroup::{CgroupSettings, CgroupVersion, Hierarchies};

    /// The loop reads the hierarchies the job side writes: with `cgroup.version: v2` and a
    /// cgroup2 mount that auto-detection at `/sys/fs/cgroup` would not pick (this host is v1
    /// or hybrid, or the mount is elsewhere), the collector still reads v2 at that mount.
    #[test]
    fn the_collector_follows_the_configured_cgroup_version() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().join("fake-cgroup2");
        let svc = mount.join("svc");
        std::fs::create_dir_all(&svc).unwrap();
        std::fs::write(svc.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        std::fs::write(svc.join("cgroup.subtree_control"), "").unwrap();
        let offline = svc.join("offline");
        std::fs::create_dir_all(&offline).unwrap();
        std::fs::write(offline.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        std::fs::write(offline.join("cgroup.subtree_control"), "").unwrap();
        let settings = CgroupSettings {
            version: CgroupVersion::V2,
            mount: mount.clone(),
            root: Some(PathBuf::from("svc")),
            move_self: Some(false),
            ..Default::default()
        };
        let tree = CgroupTree::open(&settings).unwrap();
        let cs = collector_settings(&tree, None);
        assert_eq!(cs.hierarchies, Hierarchies::V2 { mount });
        assert_eq!(cs.offline, PathBuf::from("svc/offline"));
    }
}
