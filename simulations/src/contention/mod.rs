//! The contention model: how CPU, memory and IO demand on a node turn into online latency and
//! into the interference signals colo's agent would measure.
//!
//! One node, one instant (steady state over a tick). Inputs: the online services' demand, each
//! offline VM's demand and limits, the offline group's limits. Outputs: what every party is
//! granted, the online p99 (a model: the traces carry no latency), and the signals the policy
//! engine reads (run delay, PSI, IO latency and utilisation, SLI).
//!
//! `p99 = queue(ρ) + slice × busy × occupancy + io × offline disk share + membw + reclaim`:
//!
//! - **queue**: the online service as an M/M/1 server, whose p99 sojourn time scales as
//!   `1 / (1 − ρ)`; `ρ` is online demand over the CPU online can count on (the whole node, or
//!   its fair half when same-weight offline work competes);
//! - **slice**: a waking online task waits behind a running same-weight offline thread when no
//!   core is idle; `busy` rises from 0 at the busy knee to 1 at a full node, `occupancy` is the
//!   offline share of the busy CPU (low-weight and SCHED_IDLE work count with the residual);
//! - **io**: offline disk traffic slows online requests in proportion to the share of disk
//!   bandwidth it takes (mq-deadline has no weights, so only throttling helps);
//! - **membw** and **reclaim**: memory-bandwidth-bound offline CPU, and reclaim when node memory
//!   nears full.
//!
//! The coefficients come from [`crate::calibration`]. The function allocates nothing.

mod inputs;

use colo_policy::PsiSample;

pub use inputs::{Capacity, Contention, GroupLimits, LoadMut, OnlineDemand, VmLoad};

use crate::calibration::Coefficients;

/// The smaller of two numbers that are never NaN (one `minss`, unlike `f32::min`).
#[inline]
fn lesser(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// The smaller of two `f64`s, `b` if `a` is NaN (as `f64::min`), in one `minsd`:
/// `f64::min` also checks `b` for NaN, several instructions more, and the model makes 17
/// calls of `min`, `max` or `clamp` per evaluation. Its inputs are never NaN.
#[inline]
fn min(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}

/// The larger of two `f64`s, `b` if `a` is NaN (see [`min`]).
#[inline]
fn max(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// `x` within 0..1 (0 if `x` is NaN, where `f64::clamp` would give NaN; see [`min`]).
#[inline]
fn unit(x: f64) -> f64 {
    min(max(x, 0.0), 1.0)
}

/// What [`evaluate_cached`] keeps from one evaluation of a node to the next, so that the
/// per-VM work is skipped when nothing it depends on moved.
///
/// Two parts: the VMs' summed demand (which depends only on the VMs: their demand, vCPU
/// quotas, weights, run state and memory), and the grants written into each VM (which also
/// depend on the three factors the node-wide split gives them: the group quota's scale and the
/// granted shares of normal- and low-weight demand, kept as the exact `f32` bits the per-VM
/// loop uses). On a node whose VMs and limits stay put and whose offline demand fits, those
/// factors are the same from step to step, so the grants already in the VMs are the ones
/// the loop would write again, bit for bit. The same holds for the pass that scales the VMs'
/// IO down when a group IO limit binds or the disk saturates: if the factor is the same as
/// last time (its exact `f32` bits), the VMs already hold the scaled grants.
///
/// The holder must call [`GrantCache::invalidate`] whenever a VM is added or removed or any
/// input of a VM's [`VmLoad`] changes (the simulator's node does on placement, on removal and
/// after every controller tick that changed a limit).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GrantCache {
    /// Summed demand of the VMs, when still valid.
    sums: Option<DemandSums>,
    /// The split factors the VMs' grants were last written with, and what the loop summed.
    grants: Option<Grants>,
    /// Whether the last evaluation reused the grants already in the VMs.
    reused: bool,
}

/// The VMs' demand as the first pass over them sums it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct DemandSums {
    want_n: f64,
    want_l: f64,
    memory: u64,
}

/// The per-VM loop's key (bits of its three factors) and its sums; and, when the VMs' IO was
/// then scaled down (a group IO limit or a saturated disk), the factor's bits and the scaled
/// sum.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Grants {
    key: [u32; 3],
    io_want: f32,
    membw_cpu: f32,
    scaled: Option<(u32, f64)>,
}

impl GrantCache {
    /// Forgets everything: the next evaluation walks the VMs again.
    pub fn invalidate(&mut self) {
        self.sums = None;
        self.grants = None;
    }

    /// Whether the last evaluation left every VM's grants as they were (it found the same VMs
    /// with the same limits and the same split factors): whoever mirrors the grants elsewhere
    /// (colo's engine sample) has nothing to rewrite.
    #[must_use]
    pub const fn reused(&self) -> bool {
        self.reused
    }
}

/// The per-VM pass: each VM's CPU grant, then the IO it issues at that speed, within its
/// bucket. Returns the VMs' summed IO and memory-bandwidth-bound CPU.
fn grant<V: LoadMut>(vms: &mut [V], qs: f32, fn_: f32, fl: f32) -> (f32, f32) {
    // No division (each VM carries the reciprocals of its demands) and plain comparisons
    // instead of the NaN-aware `min`/`max` (the inputs are never NaN).
    let (mut io_want, mut membw_cpu) = (0.0f32, 0.0f32);
    for vm in vms.iter_mut() {
        let vm = vm.load_mut();
        if vm.paused {
            vm.cpu = 0.0;
            vm.io = 0.0;
            vm.throttled = 0.0;
            vm.speed = 0.0;
            continue;
        }
        let want = lesser(vm.cpu_demand, vm.vcpu_quota);
        let frac = if vm.low_weight { fl } else { fn_ };
        let cpu = want * qs * frac;
        vm.cpu = cpu;
        let allowed = if vm.cpu_demand > 0.0 {
            lesser(want * vm.inv_cpu_demand * qs, 1.0)
        } else {
            1.0
        };
        let cpu_frac = if vm.cpu_demand > 0.0 {
            allowed * frac
        } else {
            1.0
        };
        vm.throttled = 1.0 - allowed;
        let io = lesser(vm.io_demand * cpu_frac, vm.io_limit);
        vm.io = io;
        vm.speed = if vm.io_demand > 0.0 {
            lesser(cpu_frac, io * vm.inv_io_demand)
        } else {
            cpu_frac
        };
        io_want += io;
        membw_cpu += cpu * vm.membw;
    }
    (io_want, membw_cpu)
}

/// Evaluates one tick: fills each VM's grants and returns what the node looks like.
#[must_use]
pub fn evaluate<V: LoadMut>(
    k: &Coefficients,
    cap: &Capacity,
    online: &OnlineDemand,
    group: &GroupLimits,
    vms: &mut [V],
) -> Contention {
    evaluate_cached(k, cap, online, group, vms, &mut GrantCache::default())
}

/// [`evaluate`], skipping the per-VM passes that `cache` shows would write what the VMs
/// already hold: the same result, bit for bit, as [`evaluate`] (see [`GrantCache`] for what
/// the caller must do to keep it valid).
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn evaluate_cached<V: LoadMut>(
    k: &Coefficients,
    cap: &Capacity,
    online: &OnlineDemand,
    group: &GroupLimits,
    vms: &mut [V],
    cache: &mut GrantCache,
) -> Contention {
    let cores = max(cap.cores, 1e-9);
    let a = max(online.cpu, 0.0);

    // CPU: per-VM quotas, then the group quota, then the split with online.
    let sums = if let Some(s) = cache.sums {
        s
    } else {
        let (mut want_n, mut want_l, mut memory) = (0.0f64, 0.0f64, 0u64);
        for vm in vms.iter() {
            let vm = vm.load();
            memory = memory.saturating_add(vm.memory_bytes);
            if !vm.paused {
                let w = f64::from(lesser(vm.cpu_demand, vm.vcpu_quota));
                if vm.low_weight {
                    want_l += w;
                } else {
                    want_n += w;
                }
            }
        }
        let s = DemandSums {
            want_n,
            want_l,
            memory,
        };
        cache.sums = Some(s);
        s
    };
    // Amounts are never negative, so adding the VMs' saturated sum saturates as adding them
    // one by one would.
    let memory_used = online.memory_bytes.saturating_add(sums.memory);
    let (mut want_n, mut want_l) = (sums.want_n, sums.want_l);
    let quota_scale = if want_n + want_l > group.cpu_quota {
        max(group.cpu_quota, 0.0) / (want_n + want_l)
    } else {
        1.0
    };
    want_n *= quota_scale;
    want_l *= quota_scale;
    // Two equal-weight groups share the node; low weight takes only what online leaves.
    let online_share = if want_n > 0.0 {
        max(cores * 0.5, cores - want_n)
    } else {
        cores
    };
    let on = min(a, online_share);
    let g_n = max(min(want_n, cores - on), 0.0);
    let g_l = max(min(want_l, cores - on - g_n), 0.0);
    let frac_n = if want_n > 0.0 { g_n / want_n } else { 0.0 };
    let frac_l = if want_l > 0.0 { g_l / want_l } else { 0.0 };

    // Per VM: CPU grant, then the IO it issues at that speed, within its bucket; skipped when
    // the grants in the VMs were written with these very factors.
    #[allow(clippy::cast_possible_truncation)]
    let (qs, fn_, fl) = (quota_scale as f32, frac_n as f32, frac_l as f32);
    let key = [qs.to_bits(), fn_.to_bits(), fl.to_bits()];
    let (mut g, mut rewrote) = match cache.grants {
        Some(g) if g.key == key => (g, false),
        _ => {
            let (io_want, membw_cpu) = grant(vms, qs, fn_, fl);
            let g = Grants {
                key,
                io_want,
                membw_cpu,
                scaled: None,
            };
            (g, true)
        }
    };
    let (io_want, membw_cpu) = (f64::from(g.io_want), f64::from(g.membw_cpu));

    // The group throttle, then the disk (no weights: everyone slows alike when it saturates).
    let group_scale = if io_want > group.io_limit {
        max(group.io_limit, 0.0) / io_want
    } else {
        1.0
    };
    let io_on_want = max(online.io_bytes_per_sec, 0.0);
    let demand = io_on_want + io_want * group_scale;
    let disk_scale = if demand > cap.disk_bytes_per_sec {
        cap.disk_bytes_per_sec / demand
    } else {
        1.0
    };
    let disk_utilisation = min(demand * cap.inv_disk, 1.0);
    let io_scale = group_scale * disk_scale;
    #[allow(clippy::cast_possible_truncation)]
    let s = io_scale as f32;
    let scale_bits = (io_scale < 1.0).then_some(s.to_bits());
    if g.scaled.is_some_and(|(bits, _)| Some(bits) != scale_bits) {
        // The VMs' IO was scaled by another factor: their grants are written afresh (the
        // sums are the same: nothing they depend on moved).
        let _ = grant(vms, qs, fn_, fl);
        g.scaled = None;
        rewrote = true;
    }
    let offline_io = match (scale_bits, g.scaled) {
        (None, _) => io_want * io_scale,
        (Some(_), Some((_, sum))) => sum,
        (Some(bits), None) => {
            let mut sum = 0.0;
            for vm in vms.iter_mut() {
                let vm = vm.load_mut();
                if vm.paused || vm.io_demand <= 0.0 {
                    continue;
                }
                vm.io *= s;
                sum += f64::from(vm.io);
                vm.speed = vm.speed.min(vm.io * vm.inv_io_demand);
            }
            g.scaled = Some((bits, sum));
            rewrote = true;
            sum
        }
    };
    cache.grants = Some(g);
    cache.reused = !rewrote;

    // Latency.
    let g = g_n + g_l;
    let max_u = k.max_utilisation;
    let rho = min(a / max(online_share, 1e-9), max_u);
    let queue_ms = k.queue_numerator_ms / (1.0 - rho);
    let busy_u = min((on + g) * cap.inv_cores, 1.0);
    let busy = unit((busy_u - k.busy_knee) * k.inv_busy_span);
    let occupancy = if on + g > 0.0 {
        (g_n + k.low_weight_residual * g_l) / (on + g)
    } else {
        0.0
    };
    let cpu_ms = k.slice_ms * busy * occupancy;
    let io_ms = k.io_ms_per_disk_share * (offline_io * cap.inv_disk);
    #[allow(clippy::cast_precision_loss)]
    let mem_share = memory_used as f64 * cap.inv_memory;
    let pressure = unit((mem_share - k.reclaim_start) * k.inv_reclaim_span);
    let memory_ms = k.membw_full_ms * (membw_cpu * cap.inv_cores) + k.reclaim_full_ms * pressure;

    let online_io = io_on_want * disk_scale;
    let io_queue = 1.0 / (1.0 - min(disk_utilisation, max_u));
    let io_some = if online_io > 0.0 {
        min((online_io * cap.inv_disk) * io_queue, 1.0)
    } else {
        0.0
    };
    Contention {
        online_cpu: on,
        offline_cpu: g,
        offline_io,
        memory_used,
        p99_ms: queue_ms + cpu_ms + io_ms + memory_ms,
        p99_queue_ms: queue_ms,
        p99_cpu_ms: cpu_ms,
        p99_io_ms: io_ms,
        p99_memory_ms: memory_ms,
        run_delay: on * busy * occupancy,
        psi: PsiSample {
            cpu_some: min(busy * occupancy, 1.0),
            memory_some: 0.5 * pressure,
            memory_full: 0.2 * pressure,
            io_some,
            io_full: 0.5 * io_some,
        },
        io_latency: k.disk_service_ms * 1e-3 * io_queue,
        disk_utilisation,
    }
}

#[cfg(test)]
mod tests;
