//! The cluster loop, in rounds of a few steps: the VMs placed during the previous round start
//! on their nodes, then every node steps through the round — in parallel over contiguous
//! shards of nodes — while the scheduler (colo's scoring functions) places the VMs that arrive
//! meanwhile on the nodes' reports from before the round, for the next round; then the ends of
//! VMs are accounted. Placement thus sees reports one round old, as colo-scheduler sees reports
//! that lag the nodes, and runs beside the nodes' steps rather than between rounds.
//!
//! Determinism: node-level randomness is a hash of `(seed, node, step)`, cluster-level draws are
//! made by one thread in a fixed order (placement decides on a copy of the reports taken
//! between rounds, whatever the nodes do meanwhile), shards are contiguous so concatenating their events in
//! shard order gives node order, and all sums are integers. The result is the same bytes for
//! any number of threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, PoisonError, RwLock};

use crate::calibration::Coefficients;
use crate::controller::{ActionCounts, Controller};
use crate::metrics::{Bucket, Summary, VmCounts, quantile_upper};
use crate::node::{Node, PREFETCH_STAGES, Report, StepContext, prefetch_stage};
use crate::trace::{OnlineSample, TraceSource, VmSpec};
use crate::vm::{Outcome, Vm, VmEnd};

mod config;
mod placement;

pub use config::{Progress, RunError, RunResult, SimConfig};
pub use placement::judge;
use placement::place;

#[derive(Debug)]
struct Pending {
    spec: VmSpec,
    submitted_s: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Job {
    first_arrival_s: u32,
    last_end_s: u32,
    vms: u32,
    finished: u32,
    failed: bool,
}

/// Nodes per shard. Shards are handed to the threads one at a time as each finishes its last,
/// so both cores stay busy to the end of a round whatever else runs on the machine (a fixed
/// split left one thread waiting for the other at every round).
const SHARD_NODES: usize = 64;

/// A contiguous run of nodes; shards in order are the nodes in order.
#[derive(Debug)]
struct Shard<S> {
    first: usize,
    nodes: Vec<Node<S>>,
    /// Each node's latest report, side by side: placement scans these (a few cache lines in a
    /// row) rather than the nodes' large structs.
    reports: Vec<Report>,
    ends: Vec<VmEnd>,
}

/// One thread's sums (integers, so which thread stepped which shard changes nothing).
#[derive(Debug)]
struct Sums {
    counts: ActionCounts,
    /// Sums of each step of the current round.
    steps: Vec<Bucket>,
    utilisation_hist: Vec<u64>,
}

/// Runs `ctrl`'s mode over `trace`.
///
/// # Errors
/// [`RunError`] when the trace cannot be read or the settings make no sense.
#[allow(clippy::too_many_lines)]
pub fn run<C: Controller>(
    trace: &mut dyn TraceSource,
    cfg: &SimConfig,
    ctrl: &C,
    progress: &dyn Progress,
) -> Result<RunResult, RunError> {
    let info = trace.info().clone();
    let n = info.nodes.len();
    if n == 0 || info.steps == 0 {
        return Err(RunError::Config(
            "the trace has no nodes or no steps".into(),
        ));
    }
    if cfg.slo_p99_ms.is_nan() || cfg.slo_p99_ms <= 0.0 {
        return Err(RunError::Config(format!(
            "SLO p99 {} ms: give a positive target",
            cfg.slo_p99_ms
        )));
    }
    let threads = cfg.threads.clamp(1, n);
    let coefficients = Coefficients::derive(&cfg.calibration);
    let cx = StepContext::new(
        &coefficients,
        &cfg.scoring,
        cfg.slo_p99_ms,
        info.step_secs,
        cfg.tick,
        cfg.max_ticks,
    );
    let per = SHARD_NODES;
    let shards: Vec<Mutex<Shard<C::State>>> = (0..n.div_ceil(per))
        .map(|t| {
            let first = (t * per).min(n);
            let last = ((t + 1) * per).min(n);
            #[allow(clippy::cast_possible_truncation)]
            let nodes: Vec<_> = (first..last)
                .map(|i| Node::new(i as u32, info.nodes[i], ctrl))
                .collect();
            Mutex::new(Shard {
                first,
                reports: nodes.iter().map(|n| n.report).collect(),
                nodes,
                ends: Vec::with_capacity(64),
            })
        })
        .collect();
    // Steps per placement round: nodes step this many times in a row between two rounds, so a
    // node's state stays in cache across them (memory traffic is what limits a large run).
    let block = cfg.placement_every.clamp(1, 360);
    let rows = RwLock::new(vec![OnlineSample::default(); n * block as usize]);
    let generated = trace.online_is_generated();
    let model = trace.synthetic().cloned();

    let bucket_steps = info.steps.div_ceil(cfg.buckets.max(1)).max(1);
    let mut series = vec![Bucket::default(); info.steps.div_ceil(bucket_steps) as usize];
    let mut pending: VecDeque<Pending> = VecDeque::with_capacity(4096);
    let mut retry: Vec<Pending> = Vec::with_capacity(cfg.max_attempts);
    let mut arrivals: Vec<VmSpec> = Vec::with_capacity(4096);
    let mut ends: Vec<VmEnd> = Vec::with_capacity(4096);
    let mut jobs: Vec<Job> = Vec::new();
    let mut vms = VmCounts::default();
    let mut next_vm_id: u64 = 0;
    // The scheduler's view of the nodes (their reports as the last round started) and the
    // VMs it placed on it, which start on their nodes when the next round starts.
    let mut view: Vec<Report> = Vec::with_capacity(n);
    for shard in &shards {
        view.extend_from_slice(&lock(shard).reports);
    }
    let mut placed: Vec<(usize, Pending)> = Vec::with_capacity(4096);
    let mut cursor = 0usize;
    let mut work_done_mcs: u64 = 0;
    let sums: Vec<Mutex<Sums>> = (0..threads)
        .map(|_| {
            Mutex::new(Sums {
                counts: ActionCounts::default(),
                steps: vec![Bucket::default(); block as usize],
                utilisation_hist: vec![0; 1001],
            })
        })
        .collect();
    // The next shard to step in this round.
    let next_shard = AtomicUsize::new(0);

    // Steps every node of a shard through `len` steps from `first`, node by node.
    let step_shard = |shard: &mut Shard<C::State>, sums: &mut Sums, first: u32, len: u32| {
        let rows = rows.read().unwrap_or_else(PoisonError::into_inner);
        let Shard {
            nodes,
            reports,
            ends,
            ..
        } = shard;
        let Sums {
            counts,
            steps,
            utilisation_hist,
        } = sums;
        let model = if generated { model.as_ref() } else { None };
        for i in 0..nodes.len() {
            // Prefetching, spread over the node's steps so that the CPU's few outstanding
            // misses are never all taken at once (a burst of prefetches stalls the core like a
            // miss): the struct of the node two ahead before the first step, then its VMs,
            // then its controller's buffers. Fewer steps than stages: the rest after the last.
            let mut stage = 0;
            for k in 0..len {
                prefetch_stage(ctrl, nodes, i + 2, stage);
                stage += 1;
                let node = &mut nodes[i];
                let step = first + k;
                let row = &rows[k as usize * n..(k as usize + 1) * n];
                let online = node.online_demand(step, model, row);
                let s = node.step(ctrl, &cx, step, &online, ends, counts);
                steps[k as usize].add_sample(&s);
                utilisation_hist[(s.utilisation_permille as usize).min(1000)] += 1;
            }
            while stage < PREFETCH_STAGES {
                prefetch_stage(ctrl, nodes, i + 2, stage);
                stage += 1;
            }
            reports[i] = nodes[i].report;
        }
    };

    // Steps shards until none is left in this round; `t` names the thread's sums.
    let step_shards = |t: usize, first: u32, len: u32| {
        let mut sums = lock(&sums[t]);
        loop {
            let i = next_shard.fetch_add(1, Ordering::Relaxed);
            let Some(shard) = shards.get(i) else {
                break;
            };
            step_shard(&mut lock(shard), &mut sums, first, len);
        }
    };

    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads);
    let blocks = info.steps.div_ceil(block);
    let block_at = |b: u32| (b * block, block.min(info.steps - b * block));

    let outcome = std::thread::scope(|scope| -> Result<(), RunError> {
        for t in 1..threads {
            let (stop, barrier) = (&stop, &barrier);
            let step_shards = &step_shards;
            scope.spawn(move || {
                let mut b = 0;
                loop {
                    barrier.wait();
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let (first, len) = block_at(b);
                    step_shards(t, first, len);
                    barrier.wait();
                    b += 1;
                }
            });
        }
        let finish = |r: Result<(), RunError>| {
            stop.store(true, Ordering::Release);
            if threads > 1 {
                barrier.wait();
            }
            r
        };
        let mut arrived_until = 0u32;
        for b in 0..blocks {
            let (first, len) = block_at(b);
            // Trace input for the round.
            if !generated {
                let mut r = rows.write().unwrap_or_else(PoisonError::into_inner);
                for k in 0..len {
                    let row = &mut r[k as usize * n..(k as usize + 1) * n];
                    if let Err(e) = trace.online_row(first + k, row) {
                        return finish(Err(e.into()));
                    }
                }
            }

            // The heap has grown since the last advice (rounds 1, 4, 16, …: a few calls per
            // run, each copying at most the newly grown part). Workers wait at the barrier.
            if cfg.huge_pages && b.is_power_of_two() && b.trailing_zeros() % 2 == 0 {
                let _ = crate::hugepages::advise_heap();
            }

            // The VMs placed during the previous round start now, in the order they were
            // placed; then the scheduler's view is the nodes' reports as they stand.
            let now_s = first.saturating_mul(info.step_secs);
            for (i, vm) in placed.drain(..) {
                let mut shard = lock(&shards[i / per]);
                let first_node = shard.first;
                let node = &mut shard.nodes[i - first_node];
                let started = Vm::start(next_vm_id, vm.spec, vm.submitted_s, now_s);
                if node.place(started, ctrl) {
                    shard.reports[i - first_node] = node.report;
                    next_vm_id += 1;
                } else {
                    // Never, as the view counts free slots conservatively; requeued if so.
                    retry.push(vm);
                }
            }
            for vm in retry.drain(..).rev() {
                pending.push_front(vm);
            }
            for shard in &shards {
                let shard = lock(shard);
                view[shard.first..shard.first + shard.reports.len()]
                    .copy_from_slice(&shard.reports);
            }

            // Every node steps through the round; meanwhile this thread takes in the VMs that
            // arrive during it and places them for the next round, on the view above (the
            // reports from before this round), then steps shards too.
            next_shard.store(0, Ordering::Relaxed);
            if threads > 1 {
                barrier.wait();
            }
            let until = first + len;
            let mut failed = None;
            while arrived_until < until {
                arrivals.clear();
                if let Err(e) = trace.arrivals(arrived_until, &mut arrivals) {
                    failed = Some(e);
                    break;
                }
                for spec in &arrivals {
                    let j = spec.job as usize;
                    if j >= jobs.len() {
                        jobs.resize(j + 1, Job::default());
                    }
                    let job = &mut jobs[j];
                    if job.vms == 0 {
                        job.first_arrival_s = spec.arrival_s;
                    }
                    job.first_arrival_s = job.first_arrival_s.min(spec.arrival_s);
                    job.vms += 1;
                    vms.submitted += 1;
                    pending.push_back(Pending {
                        spec: *spec,
                        submitted_s: spec.arrival_s,
                    });
                }
                arrived_until += 1;
            }
            if failed.is_none() && b + 1 < blocks {
                let (_, next_len) = block_at(b + 1);
                place(
                    cfg,
                    &mut view,
                    next_len,
                    &mut pending,
                    &mut retry,
                    &mut placed,
                    &mut cursor,
                );
            }
            step_shards(0, first, len);
            if threads > 1 {
                barrier.wait();
            }
            if let Some(e) = failed {
                return finish(Err(e.into()));
            }

            // Accounting, in node order.
            ends.clear();
            for t in &sums {
                let mut s = lock(t);
                for k in 0..len {
                    let step = first + k;
                    let bucket = &mut series[(step / bucket_steps) as usize];
                    bucket.merge(&s.steps[k as usize]);
                    s.steps[k as usize] = Bucket::default();
                }
            }
            for shard in &shards {
                ends.append(&mut lock(shard).ends);
            }
            for k in 0..len {
                series[((first + k) / bucket_steps) as usize].steps += 1;
            }
            for e in &ends {
                let job = &mut jobs[e.vm.spec.job as usize];
                job.last_end_s = job.last_end_s.max(e.at_s);
                let bucket = &mut series[(e.at_s / info.step_secs.max(1) - 1).min(info.steps - 1)
                    as usize
                    / bucket_steps as usize];
                match e.outcome {
                    Outcome::Finished => {
                        vms.finished += 1;
                        job.finished += 1;
                        let w = u64::from(e.vm.spec.cpu_millicores) * u64::from(e.vm.spec.work_s);
                        work_done_mcs += w;
                        bucket.vms_finished += 1;
                        bucket.work_done_mcs += w;
                    }
                    Outcome::Failed => {
                        vms.failed += 1;
                        job.failed = true;
                    }
                    Outcome::OomKilled => {
                        vms.oom_killed += 1;
                        job.failed = true;
                    }
                    Outcome::Preempted => {
                        vms.preempted += 1;
                        if cfg.retry_preempted {
                            vms.submitted += 1;
                            pending.push_back(Pending {
                                spec: e.vm.spec,
                                submitted_s: e.at_s,
                            });
                        } else {
                            job.failed = true;
                        }
                    }
                }
            }
            progress.update(u64::from(first + len), u64::from(info.steps));
        }
        finish(Ok(()))
    });
    outcome?;

    // Summary.
    let mut total = Bucket::default();
    for b in &series {
        total.merge(b);
    }
    let mut hist = vec![0u64; 1001];
    let mut actions = ActionCounts::default();
    for t in &sums {
        let s = lock(t);
        for (a, b) in hist.iter_mut().zip(&s.utilisation_hist) {
            *a += b;
        }
        actions.add(&s.counts);
    }
    for shard in &shards {
        let s = lock(shard);
        vms.running += s.nodes.iter().map(|n| n.vms().len() as u64).sum::<u64>();
    }
    vms.pending = pending.len() as u64;
    // A job is complete when every VM the trace gave it finished (none failed or lost).
    let mut jcts: Vec<u32> = jobs
        .iter()
        .filter(|j| j.vms > 0 && j.finished == j.vms && !j.failed)
        .map(|j| j.last_end_s.saturating_sub(j.first_arrival_s))
        .collect();
    jcts.sort_unstable();
    let jq = |q: f64| -> Option<f64> {
        if jcts.is_empty() {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((jcts.len() as f64 * q).ceil() as usize).clamp(1, jcts.len()) - 1;
        Some(f64::from(jcts[i]) / 60.0)
    };
    let jobs_submitted = jobs.iter().filter(|j| j.vms > 0).count() as u64;
    #[allow(clippy::cast_precision_loss)]
    let summary = Summary {
        mode: ctrl.name().to_owned(),
        node_steps: total.node_steps,
        utilisation_mean_pct: total.utilisation_pct(),
        utilisation_p95_pct: quantile_upper(&hist, 0.95).map_or(0.0, |i| i as f64 / 10.0),
        slo_violation_minutes: total.violation_ms as f64 / 60_000.0,
        online_p99_mean_ms: total.p99_mean_ms(),
        online_p99_p99_ms: total.p99_quantile_ms(0.99),
        offline_core_hours: total.offline_mcs as f64 / 1000.0 / 3600.0,
        work_done_core_hours: work_done_mcs as f64 / 1000.0 / 3600.0,
        vms,
        jobs_submitted,
        jobs_finished: jcts.len() as u64,
        jct_p50_min: jq(0.5),
        jct_p99_min: jq(0.99),
        actions,
        vms_per_node: if total.node_steps == 0 {
            0.0
        } else {
            total.vm_steps as f64 / total.node_steps as f64
        },
    };
    Ok(RunResult {
        summary,
        series,
        bucket_steps,
        step_secs: info.step_secs,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
