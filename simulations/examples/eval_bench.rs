//! Temporary: time contention::evaluate.
use colo_sim::calibration::Coefficients;
use colo_sim::contention::*;
fn main() {
    let k = Coefficients::default();
    let cap = Capacity::new(32.0, 128 << 30, 1e9);
    let mut vms: Vec<VmLoad> = (0..9)
        .map(|i| {
            let mut v = VmLoad::new(
                1.5 + i as f64 * 0.3,
                if i == 2 { 1e8 } else { 0.0 },
                4 << 30,
                0.2,
            );
            v.low_weight = true;
            v
        })
        .collect();
    let g = GroupLimits {
        cpu_quota: 18.0,
        io_limit: f64::INFINITY,
    };
    let n = 10_000_000u64;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let mut acc = 0.0;
        for i in 0..n {
            let on = OnlineDemand {
                cpu: 8.0 + (i % 7) as f64,
                memory_bytes: 40 << 30,
                io_bytes_per_sec: 1e7,
            };
            let c = evaluate(&k, &cap, &on, &g, std::hint::black_box(&mut vms));
            acc += c.p99_ms;
        }
        std::hint::black_box(acc);
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("{best:.1} ns/eval");
}
