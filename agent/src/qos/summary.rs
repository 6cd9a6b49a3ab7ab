//! One-second summaries of the loop's samples: the interference score shown by NodeStatus and
//! the inputs of the node report, time-averaged so that a single noisy tick does not decide
//! them. The signals are the engine's own (`NodeSample::interference_signals`), so reports score
//! exactly what the loop acted on.

use colo_policy::NodeSample;
use colo_policy::scoring::{InterferenceParams, InterferenceSignals, interference_score};

/// Averages over the ticks since the last [`Summary::take`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Seconds covered.
    pub seconds: f64,
    /// Worst online service's run delay, ms per second (time average).
    pub run_delay_ms_per_s: f64,
    /// Worst PSI `some` stall, ms per second (time average).
    pub psi_ms_per_s: f64,
    /// Worst SLI p99 ÷ target seen.
    pub sli_ratio: Option<f64>,
    /// Online services' CPU, cores.
    pub online_cpu: f64,
    /// Online services' working-set memory, bytes (last sample).
    pub online_memory: u64,
    /// Offline group's CPU, cores.
    pub offline_cpu: f64,
    /// Node busy CPU, cores.
    pub node_cpu: f64,
    /// CPU capacity, cores.
    pub capacity: f64,
    /// Node memory in use, bytes (last sample).
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
    run_delay: f64,
    psi: f64,
    online_cpu: f64,
    offline_cpu: f64,
    node_cpu: f64,
}

impl Summary {
    /// Adds one tick's sample, covering `dt` seconds.
    pub fn add(&mut self, s: &NodeSample, dt: f64) {
        if dt <= 0.0 || !dt.is_finite() {
            return;
        }
        let sig = s.interference_signals();
        let a = &mut self.acc;
        a.dt += dt;
        a.run_delay += sig.run_delay_ms_per_s * dt;
        a.psi += sig.psi_ms_per_s * dt;
        if let Some(r) = sig.sli_ratio {
            self.sli_ratio = Some(self.sli_ratio.map_or(r, |x: f64| x.max(r)));
        }
        let finite = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        a.online_cpu += s.online.iter().map(|o| finite(o.cpu_usage)).sum::<f64>() * dt;
        a.offline_cpu += finite(s.node.offline_cpu_usage) * dt;
        a.node_cpu += finite(s.node.cpu_usage) * dt;
        self.online_memory = s.online.iter().map(|o| o.memory_usage).sum();
        self.capacity = s.node.cpu_capacity;
        self.memory_used = s.node.memory_used;
        self.memory_total = s.node.memory_total;
    }

    /// The summary of the ticks added since the last call, scored with `params`; starts a new
    /// one.
    pub fn take(&mut self, params: &InterferenceParams) -> Summary {
        let a = std::mem::take(&mut self.acc);
        let dt = a.dt.max(1e-9);
        let mut out = Summary {
            seconds: a.dt,
            run_delay_ms_per_s: a.run_delay / dt,
            psi_ms_per_s: a.psi / dt,
            sli_ratio: self.sli_ratio.take(),
            online_cpu: a.online_cpu / dt,
            online_memory: self.online_memory,
            offline_cpu: a.offline_cpu / dt,
            node_cpu: a.node_cpu / dt,
            capacity: self.capacity,
            memory_used: self.memory_used,
            memory_total: self.memory_total,
            ..Summary::default()
        };
        out.interference_score = interference_score(&out.signals(), params).score;
        out
    }

    /// The averaged signals, as the scoring takes them.
    pub fn signals(&self) -> InterferenceSignals {
        InterferenceSignals {
            run_delay_ms_per_s: self.run_delay_ms_per_s,
            psi_ms_per_s: self.psi_ms_per_s,
            sli_ratio: self.sli_ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use colo_policy::OnlineSample;

    #[test]
    fn signals_are_time_averaged_and_scored() {
        let mut s = Summary::default();
        let mut n = NodeSample::default();
        n.node.cpu_capacity = 2.0;
        n.online.push(OnlineSample {
            run_delay: Some(0.010),
            cpu_usage: 0.5,
            ..Default::default()
        });
        s.add(&n, 0.75);
        n.online[0].run_delay = Some(0.050);
        n.online[0].sli_ratio = Some(1.2);
        s.add(&n, 0.25);
        let out = s.take(&InterferenceParams::default());
        assert!((out.run_delay_ms_per_s - 20.0).abs() < 1e-9, "{out:?}");
        assert!((out.online_cpu - 0.5).abs() < 1e-9);
        assert_eq!(out.sli_ratio, Some(1.2));
        assert!(out.interference_score > 0.0);
        // Taking starts afresh.
        assert_eq!(s.take(&InterferenceParams::default()).seconds, 0.0);
    }
}
