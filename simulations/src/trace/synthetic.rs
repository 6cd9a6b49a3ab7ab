//! A seeded synthetic cluster trace: diurnal online load with noise and spikes on every online
//! node, a dedicated batch pool, and batch jobs of several VMs arriving as a Poisson stream with
//! size and duration distributions.
//!
//! The online demand is a pure function of `(seed, node, step)` plus a small per-node noise
//! state, computed by the node itself when it steps, so nothing of size nodes × steps is ever
//! stored. The same function writes binary traces (`colo-sim generate`), so replaying the file
//! gives the very same run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{NodeSpec, OnlineSample, TraceError, TraceInfo, TraceSource, VmSpec};
use crate::rng::{fast_normal, hash, pick, poisson, uniform, unit};

const GIB: u64 = 1 << 30;
const DAY_S: u32 = 86_400;

/// Parameters of the synthetic trace. Defaults: a 4,000-node cluster for 8 days at 10 s steps.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticParams {
    /// Seed of every random draw.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: u32,
    /// Length in days (fractions allowed).
    pub days: f64,
    /// Seconds per step.
    pub step_secs: u32,
    /// Share of nodes in the dedicated batch pool (no online services), 0..1.
    pub batch_pool: f64,
    /// Offered batch load: mean CPU the arriving VMs would use if all ran at once, as a share
    /// of the whole cluster's cores.
    pub batch_load: f64,
    /// Online CPU at the daily peak, as a share of the node, drawn per node uniformly between
    /// these bounds.
    pub online_peak: (f64, f64),
    /// Online CPU at the nightly trough relative to the peak.
    pub online_trough: f64,
    /// Chance per node and step that an online load spike (×1.3–1.8 for 5 minutes) starts.
    pub spike_chance: f64,
    /// Median seconds of work of a VM (lognormal).
    pub vm_work_median_s: f64,
    /// Share of VMs that fail (at the end of their work).
    pub vm_failure: f64,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        Self {
            seed: 1,
            nodes: 4_000,
            days: 8.0,
            step_secs: 10,
            batch_pool: 0.1,
            batch_load: 0.4,
            online_peak: (0.30, 0.55),
            online_trough: 0.35,
            spike_chance: 2e-4,
            vm_work_median_s: 1_800.0,
            vm_failure: 0.01,
        }
    }
}

impl SyntheticParams {
    /// Number of steps.
    ///
    /// # Errors
    /// [`TraceError::Parameters`] when the parameters make no trace.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn steps(&self) -> Result<u32, TraceError> {
        if self.step_secs == 0 || self.step_secs > 3_600 {
            return Err(TraceError::Parameters(format!(
                "step of {} s: use 1..=3600",
                self.step_secs
            )));
        }
        if !(self.days > 0.0 && self.days <= 366.0) {
            return Err(TraceError::Parameters(format!(
                "{} days: use more than 0 and at most 366",
                self.days
            )));
        }
        if self.nodes == 0 || self.nodes > 1_000_000 {
            return Err(TraceError::Parameters(format!(
                "{} nodes: use 1..=1000000",
                self.nodes
            )));
        }
        for (name, v) in [
            ("batch pool", self.batch_pool),
            ("batch load", self.batch_load),
            ("online trough", self.online_trough),
            ("vm failure", self.vm_failure),
            ("spike chance", self.spike_chance),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(TraceError::Parameters(format!(
                    "{name} {v}: use a share between 0 and 1"
                )));
            }
        }
        let (lo, hi) = self.online_peak;
        if !(0.0 <= lo && lo <= hi && hi <= 1.0) {
            return Err(TraceError::Parameters(format!(
                "online peak {lo}..{hi}: use 0 <= low <= high <= 1"
            )));
        }
        if self.vm_work_median_s.is_nan() || self.vm_work_median_s < 1.0 {
            return Err(TraceError::Parameters(format!(
                "VM work median {} s: use at least 1",
                self.vm_work_median_s
            )));
        }
        Ok((self.days * f64::from(DAY_S) / f64::from(self.step_secs)).round() as u32)
    }
}

/// Per-node noise of the online model (kept by the node between steps).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OnlineNoise {
    ar: f64,
    spike_left: u32,
    spike: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct NodeOnline {
    /// The node's hash key: `mix64(seed_key ^ node)`.
    key: u64,
    peak: f64,
    memory_base: f64,
    io_base: f64,
    phase_steps: u32,
}

/// The online half of the synthetic trace.
#[derive(Clone, Debug, PartialEq)]
pub struct OnlineModel {
    steps_per_day: u32,
    spike_steps: u32,
    spike_chance: f64,
    /// Daily shape, one entry per step of a day: trough at 04:00, peak at 16:00.
    day: Vec<f64>,
    trough: f64,
    nodes: Vec<Option<NodeOnline>>,
}

const NOISE_PHI: f64 = 0.98;
const NOISE_SIGMA: f64 = 0.08;
/// `sqrt(1 − φ²)`, so the AR(1) noise has standard deviation `NOISE_SIGMA`.
const NOISE_SCALE: f64 = 0.198_997_487_421_324_1;

impl OnlineModel {
    fn new(p: &SyntheticParams, nodes: &[NodeSpec]) -> Self {
        let steps_per_day = (DAY_S / p.step_secs).max(1);
        let day = (0..steps_per_day)
            .map(|i| {
                let hour = f64::from(i) * 24.0 / f64::from(steps_per_day);
                0.5 * (1.0 - (std::f64::consts::TAU * (hour - 4.0) / 24.0).cos())
            })
            .collect();
        let (lo, hi) = p.online_peak;
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let i = i as u64;
                (!n.batch_pool).then(|| NodeOnline {
                    key: crate::rng::mix64(crate::rng::mix64(p.seed) ^ i),
                    peak: lo + (hi - lo) * unit(hash(p.seed, i, 1, 0)),
                    memory_base: 0.2 + 0.2 * unit(hash(p.seed, i, 2, 0)),
                    io_base: 0.005 + 0.02 * unit(hash(p.seed, i, 3, 0)),
                    // ±2 h of phase between nodes.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    phase_steps: (unit(hash(p.seed, i, 4, 0)) * f64::from(steps_per_day) / 6.0)
                        as u32,
                })
            })
            .collect();
        Self {
            steps_per_day,
            spike_steps: (300 / p.step_secs).max(1),
            spike_chance: p.spike_chance,
            day,
            trough: p.online_trough,
            nodes,
        }
    }

    /// The online demand of `node` at `step`; `noise` is the node's state, advanced by one step.
    /// Call it for consecutive steps of a node.
    #[must_use]
    pub fn sample(&self, node: u32, step: u32, noise: &mut OnlineNoise) -> OnlineSample {
        let Some(n) = self.nodes.get(node as usize).copied().flatten() else {
            return OnlineSample::from_shares(0.0, 0.02, 0.0);
        };
        // Three hashes per node-step: the node's key is mixed once, when the model is built.
        let base = crate::rng::mix64(n.key ^ u64::from(step));
        let h = |stream: u64| crate::rng::mix64(base ^ stream);
        noise.ar = NOISE_PHI * noise.ar + NOISE_SIGMA * NOISE_SCALE * fast_normal(h(10));
        if noise.spike_left > 0 {
            noise.spike_left -= 1;
        } else if unit(h(12)) < self.spike_chance {
            noise.spike_left = self.spike_steps;
            noise.spike = 1.3 + 0.5 * unit(h(13));
        }
        let spike = if noise.spike_left > 0 {
            noise.spike
        } else {
            1.0
        };
        let day = step / self.steps_per_day;
        let mut at = step - day * self.steps_per_day + n.phase_steps;
        if at >= self.steps_per_day {
            at -= self.steps_per_day;
        }
        let d = self.day[at as usize];
        let weekday = day % 7;
        let weekend = if weekday >= 5 { 0.85 } else { 1.0 };
        let cpu = n.peak * (self.trough + (1.0 - self.trough) * d) * weekend * (1.0 + noise.ar);
        let memory = n.memory_base + 0.1 * d + 0.02 * noise.ar;
        let io = n.io_base * (0.5 + d) * spike;
        OnlineSample::from_shares(cpu * spike, memory, io)
    }
}

#[derive(Clone, Copy, Debug)]
struct VmShape {
    weight: f64,
    vcpus: [(u16, f64); 4],
    cpu_use: (f64, f64),
    memory_gib_per_vcpu: (f64, f64),
    io_mib_s: (f64, f64),
    membw: (f64, f64),
}

/// CPU-bound, memory-bound and IO-heavy VMs.
const SHAPES: [VmShape; 3] = [
    VmShape {
        weight: 0.55,
        vcpus: [(1, 0.1), (2, 0.3), (4, 0.4), (8, 0.2)],
        cpu_use: (0.6, 1.0),
        memory_gib_per_vcpu: (1.0, 3.0),
        io_mib_s: (0.0, 0.0),
        membw: (0.0, 0.3),
    },
    VmShape {
        weight: 0.2,
        vcpus: [(1, 0.1), (2, 0.3), (4, 0.4), (8, 0.2)],
        cpu_use: (0.6, 1.0),
        memory_gib_per_vcpu: (4.0, 8.0),
        io_mib_s: (0.0, 0.0),
        membw: (0.6, 1.0),
    },
    VmShape {
        weight: 0.25,
        vcpus: [(1, 0.3), (2, 0.5), (4, 0.2), (4, 0.0)],
        cpu_use: (0.3, 0.6),
        memory_gib_per_vcpu: (1.0, 2.0),
        io_mib_s: (50.0, 300.0),
        membw: (0.0, 0.2),
    },
];

const JOB_SIZES: [(u32, u32, f64); 3] = [(1, 1, 0.4), (2, 4, 0.4), (5, 16, 0.2)];

/// Draws batch jobs.
#[derive(Debug)]
struct JobGenerator {
    rng: ChaCha8Rng,
    work_median_s: f64,
    failure: f64,
    next_job: u32,
}

impl JobGenerator {
    fn new(seed: u64, p: &SyntheticParams) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            work_median_s: p.vm_work_median_s,
            failure: p.vm_failure,
            next_job: 0,
        }
    }

    fn job_size(&mut self) -> u32 {
        let i = pick(&mut self.rng, &JOB_SIZES.map(|s| s.2));
        let (lo, hi) = (JOB_SIZES[i].0, JOB_SIZES[i].1);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let extra = (unit(rand::RngCore::next_u64(&mut self.rng)) * f64::from(hi - lo + 1)) as u32;
        lo + extra.min(hi - lo)
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn vm(&mut self, job: u32, arrival_s: u32) -> VmSpec {
        let r = &mut self.rng;
        let shape = SHAPES[pick(r, &SHAPES.map(|s| s.weight))];
        let vcpus = shape.vcpus[pick(r, &shape.vcpus.map(|v| v.1))].0;
        let v = f64::from(vcpus);
        let cpu = v * uniform(r, shape.cpu_use.0, shape.cpu_use.1);
        let mem_gib = v * uniform(r, shape.memory_gib_per_vcpu.0, shape.memory_gib_per_vcpu.1);
        let request_mib = (mem_gib.ceil() as u32).max(1) * 1024;
        let io = uniform(r, shape.io_mib_s.0, shape.io_mib_s.1);
        let membw = uniform(r, shape.membw.0, shape.membw.1);
        let work =
            (self.work_median_s * (crate::rng::normal_from(r)).exp()).clamp(60.0, 12.0 * 3600.0);
        let fails = unit(rand::RngCore::next_u64(r)) < self.failure;
        VmSpec {
            arrival_s,
            job,
            request_millicores: u32::from(vcpus) * 1000,
            request_mib,
            vcpus,
            cpu_millicores: (cpu * 1000.0).round() as u32,
            memory_mib: (mem_gib * 1024.0 * 0.9) as u32,
            io_kib_per_sec: (io * 1024.0) as u32,
            membw: (membw * 255.0).round() as u8,
            work_s: work as u32,
            fails,
        }
    }
}

/// The synthetic trace as a [`TraceSource`].
#[derive(Debug)]
pub struct SyntheticTrace {
    info: TraceInfo,
    online: OnlineModel,
    jobs: JobGenerator,
    /// Mean jobs arriving per step.
    jobs_per_step: f64,
}

impl SyntheticTrace {
    /// Builds the trace.
    ///
    /// # Errors
    /// [`TraceError::Parameters`] on parameters that make no trace.
    #[allow(clippy::cast_precision_loss)]
    pub fn new(p: &SyntheticParams) -> Result<Self, TraceError> {
        let steps = p.steps()?;
        let pool_every = if p.batch_pool > 0.0 {
            Some((1.0 / p.batch_pool).round().max(1.0))
        } else {
            None
        };
        let nodes: Vec<NodeSpec> = (0..p.nodes)
            .map(|i| {
                let big = unit(hash(p.seed, u64::from(i), 0, 0)) < 0.3;
                let cores = if big { 64 } else { 32 };
                let batch_pool = pool_every.is_some_and(|e| f64::from(i) % e == e - 1.0);
                NodeSpec {
                    cpu_millicores: cores * 1000,
                    memory_bytes: u64::from(cores) * 4 * GIB,
                    disk_bytes_per_sec: 1_000_000_000,
                    batch_pool,
                }
            })
            .collect();
        let total_cores: f64 = nodes
            .iter()
            .map(|n| f64::from(n.cpu_millicores) / 1000.0)
            .sum();
        // Mean CPU-seconds of one job, estimated from draws of its own generator.
        let mut probe = JobGenerator::new(hash(p.seed, 0xfeed, 0, 0), p);
        let n_probe = 5_000;
        let mut core_seconds = 0.0;
        for _ in 0..n_probe {
            let k = probe.job_size();
            for _ in 0..k {
                let vm = probe.vm(0, 0);
                core_seconds += f64::from(vm.cpu_millicores) / 1000.0 * f64::from(vm.work_s);
            }
        }
        let per_job = core_seconds / f64::from(n_probe);
        let jobs_per_step = p.batch_load * total_cores * f64::from(p.step_secs) / per_job;
        let online = OnlineModel::new(p, &nodes);
        Ok(Self {
            info: TraceInfo {
                step_secs: p.step_secs,
                steps,
                nodes,
                description: format!(
                    "synthetic: seed {}, {} nodes ({}% batch pool), {} days, batch load {}%",
                    p.seed,
                    p.nodes,
                    p.batch_pool * 100.0,
                    p.days,
                    p.batch_load * 100.0
                ),
            },
            online,
            jobs: JobGenerator::new(hash(p.seed, 0x10b5, 0, 0), p),
            jobs_per_step,
        })
    }

    /// The online model (for writing binary traces).
    #[must_use]
    pub const fn online_model(&self) -> &OnlineModel {
        &self.online
    }
}

impl TraceSource for SyntheticTrace {
    fn info(&self) -> &TraceInfo {
        &self.info
    }

    fn online_is_generated(&self) -> bool {
        true
    }

    fn synthetic(&self) -> Option<&OnlineModel> {
        Some(&self.online)
    }

    fn online_row(&mut self, step: u32, row: &mut [OnlineSample]) -> Result<(), TraceError> {
        // Only for callers that want rows anyway (`generate`): they must keep the noise.
        let _ = (step, row);
        Err(TraceError::Parameters(
            "the synthetic trace's online demand is computed by each node; use \
             OnlineModel::sample"
                .to_owned(),
        ))
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn arrivals(&mut self, step: u32, out: &mut Vec<VmSpec>) -> Result<(), TraceError> {
        let spd = self.online.steps_per_day;
        // More batch work at night: ±30 % in anti-phase with the online day.
        let d = self.online.day[(step % spd) as usize];
        let lambda = self.jobs_per_step * (1.3 - 0.6 * d);
        let n = poisson(&mut self.jobs.rng, lambda);
        let base = step.saturating_mul(self.info.step_secs);
        let first = out.len();
        for _ in 0..n {
            let job = self.jobs.next_job;
            self.jobs.next_job = self.jobs.next_job.wrapping_add(1);
            let offset = (unit(rand::RngCore::next_u64(&mut self.jobs.rng))
                * f64::from(self.info.step_secs)) as u32;
            let k = self.jobs.job_size();
            for _ in 0..k {
                out.push(
                    self.jobs
                        .vm(job, base + offset.min(self.info.step_secs - 1)),
                );
            }
        }
        // In arrival order, as a binary trace stores them (stable: ties keep job order).
        out[first..].sort_by_key(|v| v.arrival_s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SyntheticParams {
        SyntheticParams {
            nodes: 20,
            days: 1.0,
            step_secs: 60,
            ..SyntheticParams::default()
        }
    }

    #[test]
    fn online_load_is_diurnal_and_deterministic() {
        let t = SyntheticTrace::new(&small()).unwrap();
        let m = t.online_model();
        let node = (0..20)
            .find(|&i| !t.info().nodes[i as usize].batch_pool)
            .unwrap();
        let run = || {
            let mut noise = OnlineNoise::default();
            (0..1440)
                .map(|s| m.sample(node, s, &mut noise))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let mean = |r: std::ops::Range<usize>| {
            let n = r.len() as f64;
            a[r].iter().map(|s| s.cpu_share()).sum::<f64>() / n
        };
        // Night (02:00–05:00) well below afternoon (14:00–18:00).
        assert!(mean(120..300) < 0.7 * mean(840..1080), "{a:?}");
        let pool = (0..20).find(|&i| t.info().nodes[i as usize].batch_pool);
        let pool = pool.expect("10% of 20 nodes are batch pool");
        assert_eq!(m.sample(pool, 5, &mut OnlineNoise::default()).cpu, 0);
    }

    #[test]
    fn offered_load_matches_the_parameter() {
        let p = small();
        let mut t = SyntheticTrace::new(&p).unwrap();
        let mut vms = Vec::new();
        for s in 0..t.info().steps {
            t.arrivals(s, &mut vms).unwrap();
        }
        let core_s: f64 = vms
            .iter()
            .map(|v| f64::from(v.cpu_millicores) / 1000.0 * f64::from(v.work_s))
            .sum();
        let cores: f64 = t
            .info()
            .nodes
            .iter()
            .map(|n| f64::from(n.cpu_millicores) / 1000.0)
            .sum();
        let offered = core_s / (cores * 86_400.0);
        assert!(
            (offered - p.batch_load).abs() < 0.15,
            "offered {offered} vs {}",
            p.batch_load
        );
        assert!(
            vms.windows(2)
                .all(|w| w[0].arrival_s / 60 <= w[1].arrival_s / 60)
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_the_fix() {
        let e = SyntheticParams {
            step_secs: 0,
            ..small()
        }
        .steps()
        .unwrap_err();
        assert!(e.to_string().contains("use 1..=3600"), "{e}");
        let e = SyntheticParams {
            batch_load: 2.0,
            ..small()
        }
        .steps()
        .unwrap_err();
        assert!(e.to_string().contains("batch load"), "{e}");
    }
}
