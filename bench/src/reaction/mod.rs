//! The reaction benchmark: how fast the offline side gives CPU back when the online load steps
//! up.
//!
//! Setup: nginx in its cgroup, colo-agent (`enforce`, the bench policy) with VMs burning every
//! vCPU, the agent's root at the low CPU weight colo is deployed with (as in the headline's
//! modes (3) and (4); `--equal-weight` leaves the default weight, so that only the loop acts).
//! The weight gives online CPU back within a scheduler tick; the loop's own decisions are timed
//! separately (below). Each trial runs the open-loop load at `rate` and doubles it at a known
//! instant (CLOCK_MONOTONIC, from the load generator). A sampler reads, every 10 ms, the offline
//! subtree's and the online cgroup's cpuacct, nginx's own CPU (`schedstat` of its processes; the
//! rest of the online cgroup is the load generator) and the node's idle time. For each trial:
//!
//! * `before` = offline CPU over the second before the step, `after` = over [step + 1 s,
//!   step + 2 s];
//! * the reaction time is the first sample after the step at which the offline CPU over the
//!   last 30 ms is at or below the midpoint `(before + after) / 2` (the window's end is used, so
//!   the figure includes up to 30 ms of averaging);
//! * the online rise is timed the same way, upwards, on the online cgroup; the offline drop
//!   minus the online rise is how long the offline side took to give way once online asked
//!   for more (the time from the step also holds how long the online side took to ask);
//! * the loop's decision time is the first CPU quota write the agent logs after the step (a
//!   `set_offline_cpu_quota` or `set_vm_vcpu_quota`, squeeze or release).
//!
//! A trial where the offline CPU did not drop by at least 0.1 cores is reported as such. A run
//! where CPU used outside the two cgroups plus host steal exceeds `max_foreign` cores (other
//! work on the node takes CPU that neither side can have) is discarded and run again, and so is
//! one where the node had more than `max_idle_before` idle cores in the second before the step
//! (the VMs were not using all the CPU, so the step could be met from idle CPU and tests
//! nothing). With `online_cpus` the online cgroup gets a cpuset (nginx and the load generator
//! on those CPUs; the VMs keep every CPU). Each
//! trial's raw samples are kept in `samples-<run>.csv` (ms from the step, then ns counters).
//!
//! Here: the settings and the trial loop; `sampling.rs` takes the samples, `analysis.rs` turns
//! them (and the agent's log) into the figures, `report.rs` writes the table.

mod analysis;
mod report;
mod sampling;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::headline::{ONLINE, ROOT, bench_policy, reset_weight, set_low_weight};
use crate::host::{BenchCgroup, CpuSnap, HostError};
use crate::loadgen::{LoadReport, mono_ns};
use crate::services::{Agent, AgentSetup, Bins, Nginx, VmSpec, loadgen, write_file};
use crate::validity::{self, load_summary, log_excerpt};

pub use analysis::analyse;
use analysis::{crossing, decision_ms, foreign_cores, realtime_offset};
pub use report::table;
use sampling::{cpu_dir, sampler};

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Trials.
    pub trials: usize,
    /// Load before the step (doubled at the step).
    pub rate: f64,
    /// Load before the step, per trial.
    pub before: Duration,
    /// Load after the step.
    pub after: Duration,
    /// Rest between trials (the quota grows back).
    pub rest: Duration,
    /// VMs (1 vCPU each).
    pub vms: u32,
    /// Results.
    pub out_dir: PathBuf,
    /// nginx port.
    pub port: u16,
    /// Policy (default: the bench policy).
    pub policy: Option<String>,
    /// The agent's root gets the low CPU weight of the headline's modes (3) and (4).
    pub low_weight: bool,
    /// A trial where CPU outside the online and offline cgroups (other processes on the node)
    /// or stolen by the host exceeds this many cores is discarded and run again.
    pub max_foreign: f64,
    /// Re-runs allowed in all for discarded trials.
    pub max_redo: usize,
    /// What changes at the step.
    pub trigger: Trigger,
    /// A trial whose node had more than this many idle cores in the second before the step is
    /// discarded and run again: the VMs were not using all the CPU (the kernel had put both
    /// vCPU threads on one CPU), so the online rise could take idle CPU and needed none of the
    /// offline side's, and the trial says nothing about how fast the offline side gives way.
    pub max_idle_before: f64,
    /// A cpuset for the online cgroup (`cpuset.cpus`, e.g. `0`): nginx and the load generator
    /// share these CPUs; the VMs keep every CPU. `None`: the kernel places the online tasks.
    pub online_cpus: Option<String>,
}

/// The bench policy without pause or eviction: every SLI-breach trial breaches the SLO for
/// seconds, and with them the first trial pauses and then evicts the VMs, leaving the later
/// ones nothing to squeeze.
pub fn sli_breach_policy(v2: bool) -> String {
    bench_policy(v2).replacen(
        "timing:\n",
        "timing:\n  pause_after: null\n  evict_after: null\n",
        1,
    )
}

/// What changes at the step of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// The online load doubles: the low weight and the loop's CPU signal act.
    #[default]
    LoadDoubles,
    /// The load stays; nginx's SLO (p99 1 ms, `sli: pushed`) is breached through `ReportSli`
    /// (20 latencies of 5 ms every 200 ms, with `coloctl report-sli`), so that the loop's own
    /// path — signal, decision, cgroup write — is what is timed. The bench policy then has
    /// no pause or eviction, so that each trial finds the VMs running.
    SliBreach,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            trials: 20,
            rate: 3000.0,
            before: Duration::from_secs(3),
            after: Duration::from_secs(3),
            rest: Duration::from_secs(10),
            vms: 2,
            out_dir: PathBuf::from("bench-results/reaction"),
            port: 18081,
            policy: None,
            low_weight: true,
            max_foreign: 0.25,
            max_redo: 20,
            trigger: Trigger::LoadDoubles,
            online_cpus: None,
            max_idle_before: 0.25,
        }
    }
}

/// Runs discarded and run again, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discarded {
    /// CPU used outside the two cgroups plus steal above `max_foreign`.
    pub foreign: usize,
    /// Node idle CPU before the step above `max_idle_before`.
    pub idle: usize,
    /// nginx did not serve the load (see [`crate::validity`]).
    pub invalid: usize,
}

impl Discarded {
    fn total(self) -> usize {
        self.foreign + self.idle + self.invalid
    }
}

/// The warm-up of each trial's load, not recorded.
const TRIAL_WARMUP: Duration = Duration::from_millis(500);

/// The mean rate a trial asks for over its recorded interval: `rate` until the step,
/// `step_rate` after it.
fn asked_rate(cfg: &Config, step_rate: f64) -> f64 {
    let before = cfg.before.saturating_sub(TRIAL_WARMUP).as_secs_f64();
    let after = cfg.after.as_secs_f64();
    (cfg.rate * before + step_rate * after) / (before + after).max(1e-9)
}

/// One trial.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Offline CPU before the step, cores.
    pub before: f64,
    /// After, cores.
    pub after: f64,
    /// Time until the offline CPU dropped, ms (`None`: no drop of ≥ 0.1 cores).
    pub drop_ms: Option<f64>,
    /// Online cgroup CPU before the step, cores.
    pub online_before: f64,
    /// After, cores.
    pub online_after: f64,
    /// Time until the online CPU rose to its midpoint, ms (`None`: no rise of ≥ 0.1 cores).
    pub rise_ms: Option<f64>,
    /// Time until the agent's first quota action after the step, ms.
    pub decision_ms: Option<f64>,
    /// Load p99 during the trial, ms.
    pub p99_ms: f64,
    /// CPU used outside the online and offline cgroups plus steal during the trial, cores.
    pub foreign: f64,
    /// Node idle CPU in the second before the step, cores.
    pub idle_before: f64,
    /// In the second [1 s, 2 s] after it.
    pub idle_after: f64,
}

/// Runs the trials and writes `reaction.md` and `trials.csv`.
pub fn run(cfg: &Config, bins: &Bins) -> Result<Vec<Trial>, HostError> {
    std::fs::create_dir_all(&cfg.out_dir).map_err(|source| HostError::Io {
        op: "mkdir",
        path: cfg.out_dir.clone(),
        source,
    })?;
    let v2 = crate::host::is_v2();
    let mut controllers = vec!["cpu", "cpuacct", "memory", "blkio"];
    if cfg.online_cpus.is_some() {
        controllers.push("cpuset");
    }
    let online = BenchCgroup::create(ONLINE, &controllers, Some(4 << 30))?;
    if let Some(cpus) = &cfg.online_cpus {
        online.write("cpuset", "cpuset.cpus", cpus)?;
    }
    let work = cfg.out_dir.join("work");
    let nginx = Nginx::start(&work.join("nginx"), cfg.port, 1024, &online)?;
    let setup = AgentSetup {
        service: "nginx".into(),
        root: format!("/{ROOT}"),
        online_cgroup: format!("/{ONLINE}"),
        policy: cfg.policy.clone().unwrap_or_else(|| match cfg.trigger {
            Trigger::LoadDoubles => bench_policy(v2),
            Trigger::SliBreach => sli_breach_policy(v2),
        }),
        vm_memory_mib: 64,
        service_extra: match cfg.trigger {
            Trigger::LoadDoubles => String::new(),
            Trigger::SliBreach => "    slo:\n      p99: 1ms\n      sli: pushed\n".into(),
        },
    };
    let mut agent = Agent::start(bins, &work.join("agent"), &setup)?;
    let vm = VmSpec {
        vcpus: 1,
        memory_mib: 64,
        mem_touch_mib: 0,
        io: None,
        cpu_units: crate::services::BURN_UNITS,
        disk_bw: None,
    };
    for i in 0..cfg.vms {
        agent.submit(&format!("react-{i}"), &vm)?;
    }
    agent.wait_running(Duration::from_secs(30))?;
    let offline = BenchCgroup::existing(&format!("{ROOT}/offline"), &["cpuacct", "cpu"]);
    let dir = cpu_dir(&offline, "offline")?;
    let online_dir = cpu_dir(&online, "online")?;
    // nginx's own processes (master and worker), to tell its CPU from the load generator's.
    let nginx_tasks: Vec<PathBuf> = crate::host::cgroup_procs_recursive(&online_dir)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "nginx")
        })
        .map(|p| PathBuf::from(format!("/proc/{p}/schedstat")))
        .collect();
    let root = BenchCgroup::existing(ROOT, &["cpu", "blkio"]);
    if cfg.low_weight {
        set_low_weight(&root, v2)?;
    }
    let offset = realtime_offset();
    let mut trials = Vec::new();
    std::thread::sleep(cfg.rest);
    let mut discarded = Discarded::default();
    let mut stopped = None;
    let mut attempt = 0usize;
    while trials.len() < cfg.trials {
        let i = attempt;
        attempt += 1;
        nginx.rotate_log();
        let log_from = nginx.error_log_len();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let snap0 = CpuSnap::now();
        let h = sampler(
            dir.clone(),
            online_dir.clone(),
            nginx_tasks.clone(),
            stop.clone(),
        );
        let total = cfg.before + cfg.after;
        let step_rate = match cfg.trigger {
            Trigger::LoadDoubles => cfg.rate * 2.0,
            Trigger::SliBreach => cfg.rate,
        };
        let extra = vec![
            "--step-at".to_string(),
            cfg.before.as_secs_f64().to_string(),
            "--step-rate".to_string(),
            step_rate.to_string(),
        ];
        let (mut child, out) = loadgen(
            bins,
            &online,
            nginx.addr,
            &nginx.path,
            cfg.rate,
            total,
            TRIAL_WARMUP,
            &extra,
        )?;
        let mut breach_at = None;
        if cfg.trigger == Trigger::SliBreach {
            std::thread::sleep(cfg.before);
            let t0 = mono_ns();
            breach_at = Some(t0);
            let end = t0 + u64::try_from(cfg.after.as_nanos()).unwrap_or(u64::MAX);
            while mono_ns() < end {
                agent.report_sli("nginx", &[5_000; 20])?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let _ = child.wait();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = h.join().unwrap_or_default();
        let snap1 = CpuSnap::now();
        let foreign = foreign_cores(&samples, snap0, snap1);
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lg: LoadReport = serde_json::from_str(&text)
            .map_err(|e| HostError::Missing(format!("colo-loadgen output: {e}: {text}")))?;
        if let Err(cause) = validity::check(&lg, asked_rate(cfg, step_rate)) {
            let evidence = format!(
                "{}\n  {}",
                load_summary(&lg),
                log_excerpt(
                    &format!("nginx's error log {}", nginx.error_log().display()),
                    &nginx.error_log_since(log_from),
                    3
                )
            );
            // Nothing answered: nginx is broken, not busy; a rerun only costs time. The error
            // returned says why, after the table.
            if lg.ok == 0 || discarded.total() >= cfg.max_redo {
                stopped = Some(HostError::NotMeasured {
                    run: format!("reaction run {}", i + 1),
                    cause,
                    evidence,
                });
                break;
            }
            discarded.invalid += 1;
            eprintln!(
                "colo-bench reaction: run {}: INVALID run, running it again: {cause}\n  {evidence}",
                i + 1
            );
            std::thread::sleep(cfg.rest);
            continue;
        }
        let step = breach_at
            .or(lg.step_mono_ns)
            .ok_or_else(|| HostError::Missing("no step time".into()))?;
        let off: Vec<(u64, u64)> = samples.iter().map(|&(t, u, ..)| (t, u)).collect();
        let on: Vec<(u64, u64)> = samples.iter().map(|&(t, _, u, ..)| (t, u)).collect();
        let idle: Vec<(u64, u64)> = samples.iter().map(|&(t, _, _, u, _)| (t, u)).collect();
        let ngx: Vec<(u64, u64)> = samples.iter().map(|&(t, .., u)| (t, u)).collect();
        let (nginx_before, nginx_after, _) = crossing(&ngx, step, false);
        // Idle CPU on the node while the VMs could have used it (they burn every vCPU).
        let (idle_before, idle_after, _) = crossing(&idle, step, false);
        let (before, after, drop_ms) = analyse(&off, step);
        let (online_before, online_after, rise_ms) = crossing(&on, step, false);
        // Each trial's samples, relative to the step, for looking at slow trials afterwards.
        let mut raw =
            String::from("t_ms_from_step,offline_cpu_ns,online_cpu_ns,node_idle_ns,nginx_cpu_ns\n");
        for (t, u, o, n, g) in &samples {
            raw.push_str(&format!(
                "{:.1},{u},{o},{n},{g}\n",
                (i128::from(*t) - i128::from(step)) as f64 / 1e6
            ));
        }
        write_file(&cfg.out_dir.join(format!("samples-{i}.csv")), &raw)?;
        // A trial that tests nothing is run again, while re-runs are left: (idle CPU?, why).
        let why = if idle_before > cfg.max_idle_before {
            Some((
                true,
                format!(
                    "the node had {idle_before:.2} idle cores in the second before the step (limit {:.2}): the step could take idle CPU, none of the offline side's",
                    cfg.max_idle_before
                ),
            ))
        } else if foreign > cfg.max_foreign {
            Some((
                false,
                format!(
                    "{foreign:.2} cores used outside the online and offline cgroups or stolen (limit {:.2})",
                    cfg.max_foreign
                ),
            ))
        } else {
            None
        };
        if let Some((idle, why)) = why
            && discarded.total() < cfg.max_redo
        {
            if idle {
                discarded.idle += 1;
            } else {
                discarded.foreign += 1;
            }
            eprintln!(
                "colo-bench reaction: run {} discarded: {why}; running it again",
                i + 1
            );
            std::thread::sleep(cfg.rest);
            continue;
        }
        let decision = decision_ms(&agent.dir.join("agent.log"), step, offset);
        eprintln!(
            "colo-bench reaction: trial {}/{} (run {}, foreign {foreign:.2} cores): offline {:.2} → {:.2} cores, drop after {}; online {:.2} → {:.2} cores, rise after {} (nginx {nginx_before:.2} → {nginx_after:.2}); node idle {idle_before:.2} → {idle_after:.2} cores; loop decision after {}",
            trials.len() + 1,
            cfg.trials,
            i + 1,
            before,
            after,
            drop_ms.map_or("–".into(), |d| format!("{d:.0} ms")),
            online_before,
            online_after,
            rise_ms.map_or("–".into(), |d| format!("{d:.0} ms")),
            decision.map_or("–".into(), |d| format!("{d:.0} ms"))
        );
        trials.push(Trial {
            before,
            after,
            drop_ms,
            online_before,
            online_after,
            rise_ms,
            decision_ms: decision,
            p99_ms: lg.p99_us / 1e3,
            foreign,
            idle_before,
            idle_after,
        });
        std::thread::sleep(cfg.rest);
    }
    if cfg.low_weight {
        reset_weight(&root, v2);
    }
    drop(agent);
    drop(nginx);
    BenchCgroup::existing(ROOT, &["cpu", "cpuacct", "memory", "blkio", "pids"]).remove();
    online.remove();
    let mut csv = String::from(
        "trial,before_cores,after_cores,drop_ms,online_before_cores,online_after_cores,rise_ms,idle_before_cores,idle_after_cores,foreign_cores,decision_ms,p99_ms\n",
    );
    for (i, t) in trials.iter().enumerate() {
        csv.push_str(&format!(
            "{i},{:.3},{:.3},{},{:.3},{:.3},{},{:.3},{:.3},{:.3},{},{:.3}\n",
            t.before,
            t.after,
            t.drop_ms.map_or(String::new(), |d| format!("{d:.1}")),
            t.online_before,
            t.online_after,
            t.rise_ms.map_or(String::new(), |d| format!("{d:.1}")),
            t.idle_before,
            t.idle_after,
            t.foreign,
            t.decision_ms.map_or(String::new(), |d| format!("{d:.1}")),
            t.p99_ms
        ));
    }
    write_file(&cfg.out_dir.join("trials.csv"), &csv)?;
    let md = table(cfg, &trials, discarded);
    write_file(&cfg.out_dir.join("reaction.md"), &md)?;
    println!("{md}");
    match stopped {
        Some(e) => Err(e),
        None => Ok(trials),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_trial_asks_the_mean_of_its_two_rates() {
        // 3 s at 3,000 req/s (the first 0.5 s not recorded), then 3 s at 6,000.
        let r = asked_rate(&Config::default(), 6000.0);
        assert!(
            (r - (3000.0 * 2.5 + 6000.0 * 3.0) / 5.5).abs() < 1e-9,
            "{r}"
        );
    }
}
