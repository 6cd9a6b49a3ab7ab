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

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::headline::{ONLINE, ROOT, bench_policy, reset_weight, set_low_weight};
use crate::host::{BenchCgroup, CpuSnap, HostError, cgroup_cpu_ns};
use crate::loadgen::{LoadReport, mono_ns};
use crate::services::{Agent, AgentSetup, Bins, Nginx, VmSpec, loadgen, write_file};
use crate::validity::{
    self, MAX_ERROR_SHARE, MIN_RATE_SHARE, NOT_MEASURED, load_summary, log_excerpt,
};

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

/// One sample: CLOCK_MONOTONIC ns, the offline subtree's CPU ns, the online cgroup's CPU ns, the
/// node's idle CPU ns (idle + iowait in `/proc/stat`, tick resolution), nginx's CPU ns (its
/// processes' `schedstat`; the rest of the online cgroup is the load generator).
type Sample = (u64, u64, u64, u64, u64);

/// CPU ns on record for the processes whose `schedstat` files are given.
fn tasks_cpu_ns(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Samples the offline and online cgroups' CPU every 10 ms until `stop`.
fn sampler(
    offline: PathBuf,
    online: PathBuf,
    nginx: Vec<PathBuf>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut out = Vec::with_capacity(4096);
        let mut next = mono_ns();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let idle = CpuSnap::now();
            out.push((
                mono_ns(),
                cgroup_cpu_ns(&offline),
                cgroup_cpu_ns(&online),
                idle.total_ns
                    .saturating_sub(idle.busy_ns)
                    .saturating_sub(idle.steal_ns),
                tasks_cpu_ns(&nginx),
            ));
            next += 10_000_000;
            let ts = libc::timespec {
                tv_sec: i64::try_from(next / 1_000_000_000).unwrap_or(0),
                tv_nsec: i64::try_from(next % 1_000_000_000).unwrap_or(0),
            };
            // SAFETY: absolute sleep on CLOCK_MONOTONIC with a timespec we own.
            unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &ts,
                    std::ptr::null_mut(),
                )
            };
        }
        out
    })
}

/// The directory whose CPU counter [`cgroup_cpu_ns`] reads: v1 `cpuacct`, else the `cpu` (v2)
/// directory.
fn cpu_dir(cg: &BenchCgroup, what: &str) -> Result<PathBuf, HostError> {
    cg.dir("cpuacct")
        .or(cg.dir("cpu"))
        .map(Path::to_path_buf)
        .ok_or_else(|| HostError::Missing(format!("{what} cgroup")))
}

/// Cores used on the node between two snapshots outside the online and offline cgroups (their
/// use from the first and last sample), plus steal.
fn foreign_cores(samples: &[Sample], a: CpuSnap, b: CpuSnap) -> f64 {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return f64::NAN;
    };
    let wall = last.0.saturating_sub(first.0) as f64;
    let span = b.total_ns.saturating_sub(a.total_ns) as f64 / f64::from(a.cpus.max(1));
    if wall <= 0.0 || span <= 0.0 {
        return f64::NAN;
    }
    let ours = (last.1.saturating_sub(first.1) + last.2.saturating_sub(first.2)) as f64 / wall;
    let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64 / span;
    let steal = b.steal_ns.saturating_sub(a.steal_ns) as f64 / span;
    (busy - ours).max(0.0) + steal
}

/// Mean rate (cores) over `[a, b]` (mono ns) from the samples.
fn mean_rate(s: &[(u64, u64)], a: u64, b: u64) -> Option<f64> {
    let first = s.iter().find(|(t, _)| *t >= a)?;
    let last = s.iter().rev().find(|(t, _)| *t <= b)?;
    (last.0 > first.0).then(|| (last.1 - first.1) as f64 / (last.0 - first.0) as f64)
}

/// The reaction of one trial (see the module docs): offline CPU before and after the step
/// (cores) and when it fell to the midpoint, ms after the step.
pub fn analyse(samples: &[(u64, u64)], step: u64) -> (f64, f64, Option<f64>) {
    crossing(samples, step, true)
}

/// Level before the step, level after it, and the first time (ms after the step) the 30 ms rate
/// crossed the midpoint: downwards when `falling`, else upwards. `None` when the level moved by
/// less than 0.1 cores in that direction.
fn crossing(samples: &[(u64, u64)], step: u64, falling: bool) -> (f64, f64, Option<f64>) {
    let s = 1_000_000_000;
    let before = mean_rate(samples, step.saturating_sub(s), step).unwrap_or(0.0);
    let after = mean_rate(samples, step + s, step + 2 * s).unwrap_or(0.0);
    let moved = if falling {
        before - after
    } else {
        after - before
    };
    if moved < 0.1 {
        return (before, after, None);
    }
    let mid = (before + after) / 2.0;
    let at = window_rates(samples, step)
        .find(|&(_, r)| (falling && r <= mid) || (!falling && r >= mid))
        .map(|(t, _)| (t - step) as f64 / 1e6);
    (before, after, at)
}

/// The 30 ms rate (cores) at each sample from `from` on, with the sample's time.
fn window_rates(samples: &[(u64, u64)], from: u64) -> impl Iterator<Item = (u64, f64)> + '_ {
    let w = 30_000_000;
    samples.iter().enumerate().filter_map(move |(i, &(t, u))| {
        if t < from {
            return None;
        }
        let &(t0, u0) = samples[..i].iter().rev().find(|(x, _)| t - *x >= w)?;
        Some((t, u.saturating_sub(u0) as f64 / (t - t0) as f64))
    })
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, ns (to place the agent's log lines on the sampler's clock).
fn realtime_offset() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let rt = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
    rt - i128::from(mono_ns())
}

/// Unix ns of an RFC 3339 UTC timestamp `2026-11-28T20:00:41.491987Z`.
fn parse_utc(ts: &str) -> Option<i128> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac_ns: i128 = format!("{frac:0<9}")[..9].parse().ok()?;
    Some(i128::from(days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000 + frac_ns)
}

/// First CPU quota write (group or per-VM vCPU) the agent applied after `step` (mono ns), ms
/// after it.
fn decision_ms(log: &Path, step: u64, offset: i128) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let step_rt = i128::from(step) + offset;
    text.lines()
        .filter(|l| {
            l.contains(" apply ")
                && (l.contains("set_offline_cpu_quota") || l.contains("set_vm_vcpu_quota"))
        })
        .filter_map(|l| parse_utc(l.split_whitespace().next()?))
        .find(|t| *t >= step_rt)
        .map(|t| (t - step_rt) as f64 / 1e6)
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

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// "met" when every trial has a figure and their p99 is at most 100 ms; "NOT measured" when
/// fewer valid trials ran than were asked (the bench stopped on a trial where nginx did not
/// serve its load).
fn verdict(v: &mut [f64], trials: usize, asked: usize) -> String {
    if trials < asked.max(1) {
        format!("{NOT_MEASURED} ({trials} valid trials of {asked})")
    } else if !v.is_empty() && v.len() == trials && pct(v, 0.99) <= 100.0 {
        "met".into()
    } else {
        "NOT met".into()
    }
}

/// The markdown table.
pub fn table(cfg: &Config, trials: &[Trial], discarded: Discarded) -> String {
    let mut drops: Vec<f64> = trials.iter().filter_map(|t| t.drop_ms).collect();
    let mut rises: Vec<f64> = trials.iter().filter_map(|t| t.rise_ms).collect();
    // How long the offline side took to give way once online asked for more (negative: before
    // the online cgroup's 30 ms average reached its midpoint).
    let mut lags: Vec<f64> = trials
        .iter()
        .filter_map(|t| Some(t.drop_ms? - t.rise_ms?))
        .collect();
    let mut dec: Vec<f64> = trials.iter().filter_map(|t| t.decision_ms).collect();
    let none = trials.len() - drops.len();
    let step = match cfg.trigger {
        Trigger::LoadDoubles => format!(
            "nginx load {:.0} → {:.0} req/s (open loop)",
            cfg.rate,
            cfg.rate * 2.0
        ),
        Trigger::SliBreach => format!(
            "nginx's SLO (p99 1 ms) breached through ReportSli (`coloctl report-sli`, 20 × 5 ms every 200 ms from the step) at a steady {:.0} req/s",
            cfg.rate
        ),
    };
    let pinned = cfg.online_cpus.as_ref().map_or(String::new(), |c| {
        format!(" (nginx and the load generator confined to CPU {c} by a cpuset on the online cgroup; the VMs on every CPU)")
    });
    let mut s = format!(
        "Step: {step}{pinned}, {} × 1-vCPU VMs burning under {} ({}); offline and online cpuacct sampled every 10 ms; {} trials; a drop or rise is the first 30 ms window past the midpoint of the levels in the second before and the second [1 s, 2 s] after the step.\n\n",
        cfg.vms,
        if cfg.low_weight {
            "the low-weight agent root of the headline's modes (3) and (4)"
        } else {
            "an agent root at the default CPU weight"
        },
        if cfg.policy.is_some() {
            "the caller's policy"
        } else {
            "the bench policy: no SCHED_IDLE, CPU squeezed on interference only"
        },
        trials.len()
    );
    s.push_str("| measure | p50 | p99 | max | trials |\n|---|---|---|---|---|\n");
    for (what, v) in [
        ("offline CPU drop to the midpoint (ms)", &mut drops),
        ("online CPU rise (ms)", &mut rises),
        ("offline drop − online rise (ms)", &mut lags),
        ("loop decision: first quota write (ms)", &mut dec),
    ] {
        let max = v.iter().copied().fold(f64::NAN, f64::max);
        s.push_str(&format!(
            "| {what} | {:.0} | {:.0} | {max:.0} | {} |\n",
            pct(v, 0.5),
            pct(v, 0.99),
            v.len()
        ));
    }
    let mean =
        |f: fn(&Trial) -> f64| trials.iter().map(f).sum::<f64>() / trials.len().max(1) as f64;
    s.push_str(&format!(
        "\nOffline CPU before/after the step (mean): {:.2} / {:.2} cores. Online CPU (mean): {:.2} / {:.2} cores. Node idle CPU (mean): {:.2} / {:.2} cores. Trials without a drop of ≥ 0.1 cores: {none}. Runs discarded for CPU used outside the two cgroups or stolen above {:.2} cores: {}. Runs discarded because the node had more than {:.2} idle cores in the second before the step (the VMs were not using all the CPU, so the step needed none of theirs): {}. Runs discarded because nginx did not serve the load (below {:.0} % of the asked rate answered, or more than {:.1} % of requests failed): {}. Goal p99 ≤ 100 ms (offline CPU drop after the step): {}.\n",
        mean(|t| t.before),
        mean(|t| t.after),
        mean(|t| t.online_before),
        mean(|t| t.online_after),
        mean(|t| t.idle_before),
        mean(|t| t.idle_after),
        cfg.max_foreign,
        discarded.foreign,
        cfg.max_idle_before,
        discarded.idle,
        MIN_RATE_SHARE * 100.0,
        MAX_ERROR_SHARE * 100.0,
        discarded.invalid,
        verdict(&mut drops, trials.len(), cfg.trials),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_drop_is_found_at_the_right_time() {
        // 1.5 cores until 40 ms after the step, then 0.5 cores.
        let step = 10_000_000_000u64;
        let mut s = Vec::new();
        let mut u = 0u64;
        let mut t = step - 2_000_000_000;
        while t < step + 3_000_000_000 {
            s.push((t, u));
            let rate = if t < step + 40_000_000 { 1.5 } else { 0.5 };
            u += (rate * 10_000_000.0) as u64;
            t += 10_000_000;
        }
        let (b, a, d) = analyse(&s, step);
        assert!((b - 1.5).abs() < 0.01 && (a - 0.5).abs() < 0.01, "{b} {a}");
        let d = d.unwrap();
        assert!((50.0..=80.0).contains(&d), "{d}");
        // No drop: reported as such.
        let flat: Vec<(u64, u64)> = (0..500u64)
            .map(|i| (step - 2_000_000_000 + i * 10_000_000, i * 10_000_000))
            .collect();
        assert_eq!(analyse(&flat, step).2, None);
    }

    /// Cumulative samples every 10 ms from 2 s before `step` to 3 s after, at `rate(ms from the
    /// step)` cores.
    fn series(step: u64, rate: impl Fn(i64) -> f64) -> Vec<(u64, u64)> {
        let mut s = Vec::new();
        let mut u = 0u64;
        let mut t = step - 2_000_000_000;
        while t < step + 3_000_000_000 {
            s.push((t, u));
            let ms = (i128::from(t) - i128::from(step)) as i64 / 1_000_000;
            u += (rate(ms) * 10_000_000.0) as u64;
            t += 10_000_000;
        }
        s
    }

    #[test]
    fn a_two_stage_drop_reaches_the_midpoint_in_its_second_stage() {
        let step = 10_000_000_000u64;
        // 1.6 cores; 1.3 from 20 ms after the step (first stage); 0.8 from 300 ms (second).
        let s = series(step, |ms| match ms {
            ..20 => 1.6,
            20..300 => 1.3,
            _ => 0.8,
        });
        let (_, _, mid) = analyse(&s, step);
        let mid = mid.unwrap();
        assert!((300.0..=340.0).contains(&mid), "{mid}");
    }

    #[test]
    fn the_online_rise_is_found_upwards() {
        let step = 10_000_000_000u64;
        let s = series(step, |ms| if ms < 50 { 0.4 } else { 0.9 });
        let (b, a, rise) = crossing(&s, step, false);
        assert!((b - 0.4).abs() < 0.01 && (a - 0.9).abs() < 0.01, "{b} {a}");
        let rise = rise.unwrap();
        assert!((60.0..=90.0).contains(&rise), "{rise}");
        // Falling series: no rise.
        let s = series(step, |ms| if ms < 50 { 0.9 } else { 0.4 });
        assert_eq!(crossing(&s, step, false).2, None);
    }

    #[test]
    fn foreign_cpu_is_what_the_node_used_outside_both_cgroups_plus_steal() {
        // 1 s, 2 CPUs: the node was busy 1.8 cores, offline used 1.0 and online 0.5, 0.1 stolen.
        let samples = vec![
            (0u64, 0u64, 0u64, 0u64, 0u64),
            (1_000_000_000, 1_000_000_000, 500_000_000, 0, 0),
        ];
        let a = CpuSnap {
            busy_ns: 0,
            steal_ns: 0,
            total_ns: 0,
            cpus: 2,
        };
        let b = CpuSnap {
            busy_ns: 1_800_000_000,
            steal_ns: 100_000_000,
            total_ns: 2_000_000_000,
            cpus: 2,
        };
        let f = foreign_cores(&samples, a, b);
        assert!((f - 0.4).abs() < 1e-9, "{f}");
        assert!(foreign_cores(&[], a, b).is_nan());
    }

    #[test]
    fn the_table_has_a_row_per_measure_and_the_verdict() {
        let trial = |drop: f64, rise: f64| Trial {
            before: 1.5,
            after: 1.0,
            drop_ms: Some(drop),
            online_before: 0.4,
            online_after: 0.9,
            rise_ms: Some(rise),
            decision_ms: None,
            p99_ms: 1.0,
            foreign: 0.0,
            idle_before: 0.0,
            idle_after: 0.0,
        };
        let cfg = Config {
            trials: 2,
            ..Config::default()
        };
        let t = table(
            &cfg,
            &[trial(20.0, 10.0), trial(40.0, 40.0)],
            Discarded {
                foreign: 1,
                idle: 2,
                invalid: 3,
            },
        );
        assert!(
            t.contains("| offline CPU drop to the midpoint (ms) | 20 | 40 | 40 | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| online CPU rise (ms) | 10 | 40 | 40 | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| offline drop − online rise (ms) | 0 | 10 | 10 | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| loop decision: first quota write (ms) | NaN | NaN | NaN | 0 |"),
            "{t}"
        );
        assert!(t.contains("above 0.25 cores: 1."), "{t}");
        assert!(
            t.contains("0.25 idle cores in the second before the step (the VMs were not using all the CPU, so the step needed none of theirs): 2."),
            "{t}"
        );
        assert!(
            t.contains(
                "(below 95 % of the asked rate answered, or more than 0.1 % of requests failed): 3."
            ),
            "{t}"
        );
        assert!(t.contains("(offline CPU drop after the step): met."), "{t}");
        // The bench stopped after one trial of the two asked: no verdict from it.
        let t = table(&cfg, &[trial(20.0, 10.0)], Discarded::default());
        assert!(
            t.contains("(offline CPU drop after the step): NOT measured (1 valid trials of 2)."),
            "{t}"
        );
        let t = table(&cfg, &[], Discarded::default());
        assert!(t.contains("NOT measured (0 valid trials of 2)."), "{t}");
    }

    #[test]
    fn a_trial_asks_the_mean_of_its_two_rates() {
        // 3 s at 3,000 req/s (the first 0.5 s not recorded), then 3 s at 6,000.
        let r = asked_rate(&Config::default(), 6000.0);
        assert!(
            (r - (3000.0 * 2.5 + 6000.0 * 3.0) / 5.5).abs() < 1e-9,
            "{r}"
        );
    }

    #[test]
    fn log_timestamps_parse() {
        assert_eq!(parse_utc("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_utc("2000-03-01T00:00:00.000001Z"),
            Some(951_868_800_000_001_000)
        );
        assert_eq!(parse_utc("garbage"), None);
    }
}
