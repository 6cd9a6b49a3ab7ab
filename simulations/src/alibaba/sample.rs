//! A small generated sample in exactly the format of Alibaba cluster-trace-v2018 (no header
//! row, the columns of `schema.txt`, empty fields and the -1/101 invalid markers where the
//! published files have them), for tests and for trying the converter. It is made up: no
//! data of the real trace is in it.

use std::fmt::Write as _;
use std::path::Path;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::AlibabaError;
use super::tables::Table;
use crate::rng::unit;

fn u(r: &mut ChaCha8Rng) -> f64 {
    unit(r.next_u64())
}

/// Writes the six tables for `machines` machines over `minutes` minutes (samples every 10 s)
/// into `dir`. Returns the number of files written.
///
/// # Errors
/// [`AlibabaError::Io`] when a file cannot be written.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn write_sample(
    dir: &Path,
    machines: u32,
    minutes: u32,
    seed: u64,
) -> Result<usize, AlibabaError> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let t0 = 86_400u32; // the sample starts one day into the trace
    let t1 = t0 + minutes * 60;
    let machines = machines.max(2);
    let (mut mm, mut mu, mut cm, mut cu, mut bt, mut bi) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let (mm, mu, cm, cu, bt, bi) = (&mut mm, &mut mu, &mut cm, &mut cu, &mut bt, &mut bi);
    let mut container = 0u32;
    for m in 1..=machines {
        let cores = if m.is_multiple_of(4) { 64 } else { 96 };
        let mem = if m.is_multiple_of(4) { 50 } else { 100 };
        // The last machine hosts no online container: it becomes the batch pool.
        let _ = writeln!(
            mm,
            "m_{m},0,{},{},{cores},{mem},USING",
            10 + m % 3,
            ["A", "B"][m as usize % 2]
        );
        let _ = writeln!(
            mm,
            "m_{m},{t0},{},{},{cores},{mem},USING",
            10 + m % 3,
            ["A", "B"][m as usize % 2]
        );
        let online = m < machines;
        let n_containers = if online { 2 + m % 2 } else { 0 };
        let mut mine = Vec::new();
        for _ in 0..n_containers {
            container += 1;
            let req = [400, 800, 1600][container as usize % 3];
            let size = 1.5 + 3.0 * u(&mut r);
            let _ = writeln!(
                cm,
                "c_{container},m_{m},0,app_{},started,{req},{req},{size:.2}",
                100 + container % 5
            );
            mine.push((container, req));
        }
        let mut t = t0;
        while t < t1 {
            let phase = f64::from(t - t0) / f64::from((t1 - t0).max(1));
            // machine_usage: the published rows often leave mem_gps..net_out empty.
            let cpu = (20.0 + 30.0 * phase + 10.0 * u(&mut r)) as u32;
            let memp = 60 + (10.0 * u(&mut r)) as u32;
            if t.is_multiple_of(60) {
                let _ = writeln!(
                    mu,
                    "m_{m},{t},{cpu},{memp},,,,,{}",
                    if t.is_multiple_of(600) {
                        "-1".to_owned()
                    } else {
                        format!("{:.0}", 5.0 * u(&mut r))
                    }
                );
            } else {
                let _ = writeln!(
                    mu,
                    "m_{m},{t},{cpu},{memp},{:.2},{},{:.2},{:.2},{:.0}",
                    10.0 * u(&mut r),
                    (3.0 * u(&mut r)) as u32,
                    20.0 * u(&mut r),
                    20.0 * u(&mut r),
                    5.0 * u(&mut r)
                );
            }
            for &(c, _) in &mine {
                let cpu = (15.0 + 40.0 * phase + 20.0 * u(&mut r)) as u32;
                let memp = 80 + (15.0 * u(&mut r)) as u32;
                if t.is_multiple_of(30) {
                    let _ = writeln!(cu, "c_{c},m_{m},{t},{cpu},{memp},,,,,,");
                } else {
                    let _ = writeln!(
                        cu,
                        "c_{c},m_{m},{t},{cpu},{memp},{:.2},{:.2},{},{:.2},{:.2},{:.0}",
                        1.0 + u(&mut r),
                        5.0 * u(&mut r),
                        (2.0 * u(&mut r)) as u32,
                        10.0 * u(&mut r),
                        10.0 * u(&mut r),
                        3.0 * u(&mut r)
                    );
                }
            }
            t += 10;
        }
    }
    // Batch: jobs of DAG tasks and independent tasks, every 2 minutes.
    let mut inst = 0u32;
    let mut job = 0u32;
    let mut t = t0 + 5;
    while t + 60 < t1 {
        job += 1;
        let dag = job.is_multiple_of(2);
        let tasks: Vec<String> = if dag {
            vec!["M1".to_owned(), "M2_1".to_owned(), "R3_2".to_owned()]
        } else {
            vec![format!("task_{:x}", 0xabc0 + job)]
        };
        let mut start = t;
        for (k, task) in tasks.iter().enumerate() {
            let n = 1 + (u(&mut r) * 4.0) as u32;
            let plan_cpu = [50, 100, 200][(job as usize + k) % 3];
            let plan_mem = 0.2 + u(&mut r);
            let len = 20 + (u(&mut r) * 200.0) as u32;
            let status = if job % 7 == 3 && k == 0 {
                "Failed"
            } else {
                "Terminated"
            };
            let _ = writeln!(
                bt,
                "{task},{n},j_{job},{},{status},{start},{},{plan_cpu},{plan_mem:.2}",
                1 + k,
                start + len + 5
            );
            for s in 1..=n {
                inst += 1;
                let d = len - (u(&mut r) * 10.0) as u32;
                let avg = f64::from(plan_cpu) * (0.5 + 0.4 * u(&mut r));
                let mem = plan_mem * (0.6 + 0.3 * u(&mut r));
                let machine = 1 + inst % machines;
                // A few rows as the published trace has them: no start time, or -1 memory.
                let (st, en) = if inst.is_multiple_of(23) {
                    (0, 0)
                } else {
                    (start + 1, start + 1 + d)
                };
                let mem_max = if inst.is_multiple_of(17) {
                    "-1".to_owned()
                } else {
                    format!("{:.2}", mem * 1.2)
                };
                let _ = writeln!(
                    bi,
                    "ins_{inst},{task},j_{job},{},{status},{st},{en},m_{machine},{s},{n},{avg:.0},{:.0},{mem:.2},{mem_max}",
                    1 + k,
                    avg * 1.3
                );
            }
            start += len + 10;
        }
        t += 120;
    }
    std::fs::create_dir_all(dir).map_err(|source| AlibabaError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let files = [
        (Table::MachineMeta, mm),
        (Table::MachineUsage, mu),
        (Table::ContainerMeta, cm),
        (Table::ContainerUsage, cu),
        (Table::BatchTask, bt),
        (Table::BatchInstance, bi),
    ];
    for (table, text) in &files {
        let p = dir.join(table.file());
        std::fs::write(&p, text.as_bytes()).map_err(|source| AlibabaError::Io {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(files.len())
}
