//! One-second summaries of the loop's readings: the interference score shown by NodeStatus and
//! the inputs of the node report, averaged so that a single noisy tick does not decide them.

use colo_policy::scoring::{InterferenceParams, InterferenceSignals, interference_score};

use crate::monitor::Readings;

/// Averages over the ticks since the last [`Summary::take`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Seconds covered.
    pub seconds: f64,
    /// Run delay summed over a service's tasks, ms per second (the worst service).
    pub run_delay_ms_per_s: f64,
    /// Worst PSI `some` stall, ms per second (cpu, memory, io; service cgroups on v2, else the
    /// system).
    pub psi_ms_per_s: f64,
    /// Worst SLI p99 ÷ target seen.
    pub sli_ratio: Option<f64>,
    /// Online services' CPU, cores.
    pub online_cpu: f64,
    /// Online services' working-set memory, bytes (last reading).
    pub online_memory: u64,
    /// Offline group's CPU, cores.
    pub offline_cpu: f64,
    /// Node busy CPU, cores.
    pub node_cpu: f64,
    /// CPU capacity, cores.
    pub capacity: f64,
    /// Node memory in use, bytes (last reading).
    pub memory_used: u64,
    /// Node memory, bytes.
    pub memory_total: u64,
    /// Interference score 0–100 of the averages (colo-policy scoring).
    pub interference_score: f64,
    acc: Acc,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Acc {
    dt: f64,
    rd_total: Vec<f64>,
    psi: [f64; 3],
    cg_psi: Vec<[f64; 3]>,
    online_cpu: f64,
    offline_cpu: f64,
    node_cpu: f64,
}

impl Summary {
    /// Adds one tick's readings.
    pub fn add(&mut self, r: &Readings) {
        let dt = r.node.interval_s;
        if dt <= 0.0 {
            return;
        }
        let a = &mut self.acc;
        a.dt += dt;
        a.rd_total.resize(r.online.len(), 0.0);
        for (i, o) in r.online.iter().enumerate() {
            if let Some(rd) = o.run_delay {
                a.rd_total[i] += rd * dt;
            }
            a.online_cpu += o.cpu * dt;
            if let Some(p) = o.psi {
                a.cg_psi.resize(r.online.len(), [0.0; 3]);
                a.cg_psi[i][0] += p.cpu_some * dt;
                a.cg_psi[i][1] += p.memory_some * dt;
                a.cg_psi[i][2] += p.io_some * dt;
            }
            if let Some(s) = o.sli_ratio {
                self.sli_ratio = Some(self.sli_ratio.map_or(s, |x: f64| x.max(s)));
            }
            self.online_memory = o.memory;
        }
        if let Some(p) = r.node.psi {
            a.psi[0] += p.cpu_some * dt;
            a.psi[1] += p.memory_some * dt;
            a.psi[2] += p.io_some * dt;
        }
        a.offline_cpu += r.node.offline_cpu * dt;
        a.node_cpu += r.node.cpu_busy * dt;
        self.capacity = r.node.cpu_capacity;
        self.memory_used = r.node.memory_used;
        self.memory_total = r.node.memory_total;
    }

    /// The summary of the ticks added since the last call, scored with `params`; starts a new
    /// one.
    pub fn take(&mut self, params: &InterferenceParams) -> Summary {
        let a = std::mem::take(&mut self.acc);
        let dt = a.dt.max(1e-9);
        let mut out = Summary {
            seconds: a.dt,
            sli_ratio: self.sli_ratio.take(),
            online_memory: self.online_memory,
            capacity: self.capacity,
            memory_used: self.memory_used,
            memory_total: self.memory_total,
            ..Summary::default()
        };
        out.run_delay_ms_per_s = a.rd_total.iter().fold(0.0, |m: f64, x| m.max(x / dt * 1e3));
        // Per-service cgroup PSI (v2) is the cleaner signal; the system figure otherwise.
        let worst = |v: &[f64; 3]| v.iter().fold(0.0, |m: f64, x| m.max(x / dt * 1e3));
        out.psi_ms_per_s = if a.cg_psi.is_empty() {
            worst(&a.psi)
        } else {
            a.cg_psi.iter().map(worst).fold(0.0, f64::max)
        };
        out.online_cpu = a.online_cpu / dt;
        out.offline_cpu = a.offline_cpu / dt;
        out.node_cpu = a.node_cpu / dt;
        let signals = InterferenceSignals {
            run_delay_ms_per_s: out.run_delay_ms_per_s,
            psi_ms_per_s: out.psi_ms_per_s,
            sli_ratio: out.sli_ratio,
        };
        out.interference_score = interference_score(&signals, params).score;
        out
    }
}
