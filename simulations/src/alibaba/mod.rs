//! Alibaba cluster-trace-v2018: readers for its six CSV tables and a converter to the
//! simulator's binary trace.
//!
//! What the conversion takes from each table (`docs/simulation.md` has the details):
//!
//! - `machine_meta`: nodes (cores, memory normalised to the largest machine; the last row
//!   with a size wins). Machines that host no online container become the batch pool.
//! - `container_meta` + `container_usage`: the online demand of each machine per step — the sum
//!   over its containers of `cpu_util_percent` × `cpu_request` (usage is a percentage of the
//!   request) and of `mem_util_percent` × `mem_size`; disk utilisation is the highest
//!   container's `disk_io_percent`. A step without samples repeats the machine's last one.
//! - `batch_task` + `batch_instance`: the offline VMs. An instance runs `end_time −
//!   start_time` seconds using `cpu_avg` and `mem_avg`; it requests its task's `plan_cpu` and
//!   `plan_mem`. Instances of one task starting in the same step are merged into VMs of up to
//!   `vm_max_millicores` of request. Status `Failed` fails at its end. The trace's placement
//!   (`machine_id`) and DAG order are not replayed: colo's scheduler places every VM anew at
//!   its recorded start.
//! - `machine_usage` is not needed (it mixes online and batch); [`convert`] reads it only when
//!   present, to report the trace's own mean machine CPU next to the converted online CPU.

pub mod csv;
pub mod sample;
pub mod tables;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::trace::{NodeSpec, OnlineSample, TraceError, TraceInfo, VmSpec, binary};
use csv::{for_each_row, valid_percent};
use tables::{
    BatchInstance, BatchTask, ContainerMeta, ContainerUsage, MachineMeta, MachineUsage, Table,
};

/// Errors of reading the trace.
#[derive(Debug, thiserror::Error)]
pub enum AlibabaError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A malformed row.
    #[error("{path}:{line}: {message}")]
    Row {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Nothing usable in the input.
    #[error("{0}")]
    Empty(String),
    /// Writing the binary trace failed.
    #[error(transparent)]
    Write(#[from] TraceError),
}

/// Reads every row of `table` in `dir`, calling `f(fields, line)`.
///
/// # Errors
/// [`AlibabaError`] with file and line.
pub fn read_table<F>(dir: &Path, table: Table, f: F) -> Result<u64, AlibabaError>
where
    F: FnMut(&[&str], u64) -> Result<(), String>,
{
    for_each_row(&dir.join(table.file()), table.columns().len(), f)
}

/// How to convert.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertOptions {
    /// Seconds per step.
    pub step_secs: u32,
    /// Keep only the first N machines (ordered by the number in their id).
    pub machines: Option<u32>,
    /// Window start, seconds of trace time (default: the first usage sample or instance start
    /// seen, rounded down to a step).
    pub from_s: Option<u32>,
    /// Window end (exclusive); default: the last usage sample or instance end seen.
    pub until_s: Option<u32>,
    /// Memory of the largest machine (the trace normalises memory to it), bytes.
    pub largest_memory_bytes: u64,
    /// Disk bandwidth of every machine, bytes/s (the trace has only percentages).
    pub disk_bytes_per_sec: u64,
    /// Most requested millicores per converted VM.
    pub vm_max_millicores: u32,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            step_secs: 10,
            machines: None,
            from_s: None,
            until_s: None,
            largest_memory_bytes: 512 << 30,
            disk_bytes_per_sec: 1_000_000_000,
            vm_max_millicores: 8_000,
        }
    }
}

/// What a conversion did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConvertStats {
    /// Nodes written.
    pub nodes: usize,
    /// Of which batch pool (no online container).
    pub batch_pool: usize,
    /// Steps written.
    pub steps: u32,
    /// Online containers known.
    pub containers: usize,
    /// `container_usage` rows used.
    pub usage_rows: u64,
    /// `container_usage` rows skipped (outside the window, unknown container or machine,
    /// invalid values).
    pub usage_skipped: u64,
    /// `batch_instance` rows used.
    pub instances: u64,
    /// `batch_instance` rows skipped (no start or end, outside the window, unknown machine
    /// set, zero length).
    pub instances_skipped: u64,
    /// VMs written.
    pub vms: usize,
    /// Jobs.
    pub jobs: usize,
    /// Mean online CPU of the converted trace over online machines, percent.
    pub online_cpu_mean_pct: f64,
    /// Mean `cpu_util_percent` of `machine_usage` (online and batch), when present.
    pub machine_cpu_mean_pct: Option<f64>,
}

impl fmt::Display for ConvertStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes ({} batch pool), {} steps, {} containers, {} usage rows ({} skipped), \
             {} instances ({} skipped) -> {} VMs in {} jobs; online CPU {:.1}% of online \
             machines",
            self.nodes,
            self.batch_pool,
            self.steps,
            self.containers,
            self.usage_rows,
            self.usage_skipped,
            self.instances,
            self.instances_skipped,
            self.vms,
            self.jobs,
            self.online_cpu_mean_pct
        )?;
        if let Some(m) = self.machine_cpu_mean_pct {
            write!(f, " (machine_usage, batch included: {m:.1}%)")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Machine {
    cores: f64,
    mem_size: f64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Container {
    node: u32,
    cpu_request_cores: f64,
    mem_size: f64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Acc {
    core_seconds: f32,
    memory_share_seconds: f32,
    io_max: f32,
    samples: u32,
}

fn machine_number(id: &str) -> u64 {
    id.trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(u64::MAX)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn secs(x: f64) -> u32 {
    x.clamp(0.0, f64::from(u32::MAX)) as u32
}

/// Converts the tables in `dir` into the binary trace `out`.
///
/// # Errors
/// [`AlibabaError`] for unreadable files or malformed rows (with file and line), or input with
/// no machines.
#[allow(
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
pub fn convert(dir: &Path, out: &Path, o: &ConvertOptions) -> Result<ConvertStats, AlibabaError> {
    let mut stats = ConvertStats::default();
    let step = o.step_secs.max(1);

    // Machines.
    let mut machines: HashMap<String, Machine> = HashMap::new();
    read_table(dir, Table::MachineMeta, |f, _| {
        let m = MachineMeta::parse(f)?;
        let e = machines.entry(m.machine_id.to_owned()).or_default();
        if let Some(c) = m.cpu_num.filter(|c| *c > 0.0) {
            e.cores = c;
        }
        if let Some(s) = m.mem_size.filter(|s| *s > 0.0 && *s <= 100.0) {
            e.mem_size = s;
        }
        Ok(())
    })?;
    let mut ids: Vec<(String, Machine)> = machines
        .into_iter()
        .filter(|(_, m)| m.cores > 0.0 && m.mem_size > 0.0)
        .collect();
    ids.sort_by(|a, b| {
        machine_number(&a.0)
            .cmp(&machine_number(&b.0))
            .then_with(|| a.0.cmp(&b.0))
    });
    if let Some(n) = o.machines {
        ids.truncate(n as usize);
    }
    if ids.is_empty() {
        return Err(AlibabaError::Empty(format!(
            "{}: no machine with cpu_num and mem_size",
            dir.join(Table::MachineMeta.file()).display()
        )));
    }
    let index: HashMap<&str, u32> = ids
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i as u32))
        .collect();

    // Online containers.
    let mut containers: HashMap<String, Container> = HashMap::new();
    read_table(dir, Table::ContainerMeta, |f, _| {
        let c = ContainerMeta::parse(f)?;
        let Some(&node) = index.get(c.machine_id) else {
            return Ok(());
        };
        let e = containers
            .entry(c.container_id.to_owned())
            .or_insert(Container {
                node,
                ..Container::default()
            });
        e.node = node;
        if let Some(r) = c.cpu_request.filter(|r| *r > 0.0) {
            e.cpu_request_cores = r / 100.0;
        }
        if let Some(m) = c.mem_size.filter(|m| *m > 0.0 && *m <= 100.0) {
            e.mem_size = m;
        }
        Ok(())
    })?;
    stats.containers = containers.len();
    let mut hosts_online = vec![false; ids.len()];
    for c in containers.values() {
        hosts_online[c.node as usize] = true;
    }

    // Online usage, accumulated per step and node.
    let n = ids.len();
    let mut acc: Vec<Acc> = Vec::new();
    let from = o.from_s.unwrap_or(0);
    let mut first_seen = u32::MAX;
    let mut last_seen = from;
    let until = o.until_s.unwrap_or(u32::MAX);
    read_table(dir, Table::ContainerUsage, |f, _| {
        let u = ContainerUsage::parse(f)?;
        let t = secs(u.time_stamp);
        let c = containers.get(u.container_id);
        let (Some(c), true) = (c, t >= from && t < until) else {
            stats.usage_skipped += 1;
            return Ok(());
        };
        let (cpu, mem) = (
            valid_percent(u.cpu_util_percent),
            valid_percent(u.mem_util_percent),
        );
        if cpu.is_none() && mem.is_none() {
            stats.usage_skipped += 1;
            return Ok(());
        }
        last_seen = last_seen.max(t);
        first_seen = first_seen.min(t);
        // Indexed from trace time 0; the window start is cut off when writing.
        let s = (t / step) as usize;
        if acc.len() < (s + 1) * n {
            acc.resize((s + 1) * n, Acc::default());
        }
        let a = &mut acc[s * n + c.node as usize];
        // Each sample stands for the trace's 10 s sampling interval, or the step if shorter.
        let w = (10.0f32).min(step as f32);
        a.core_seconds += (cpu.unwrap_or(0.0) / 100.0 * c.cpu_request_cores) as f32 * w;
        let machine_mem = ids[c.node as usize].1.mem_size;
        a.memory_share_seconds +=
            (mem.unwrap_or(0.0) / 100.0 * c.mem_size / machine_mem) as f32 * w;
        if let Some(io) = valid_percent(u.disk_io_percent) {
            a.io_max = a.io_max.max(io as f32 / 100.0);
        }
        a.samples += 1;
        stats.usage_rows += 1;
        Ok(())
    })?;

    // Batch tasks: planned size per (job, task).
    let mut plans: HashMap<(String, String), (f64, f64)> = HashMap::new();
    read_table(dir, Table::BatchTask, |f, _| {
        let t = BatchTask::parse(f)?;
        plans.insert(
            (t.job_name.to_owned(), t.task_name.to_owned()),
            (t.plan_cpu.unwrap_or(0.0), t.plan_mem.unwrap_or(0.0)),
        );
        Ok(())
    })?;

    // Batch instances → VMs.
    let largest = o.largest_memory_bytes as f64;
    let mut job_ids: HashMap<String, u32> = HashMap::new();
    let mut open: HashMap<(u32, String, u32), usize> = HashMap::new();
    let mut vms: Vec<VmSpec> = Vec::new();
    read_table(dir, Table::BatchInstance, |f, _| {
        let b = BatchInstance::parse(f)?;
        let (Some(start), Some(end)) = (b.start_time, b.end_time) else {
            stats.instances_skipped += 1;
            return Ok(());
        };
        let (start, end) = (secs(start), secs(end));
        if start == 0 || end <= start || start < from || start >= until {
            stats.instances_skipped += 1;
            return Ok(());
        }
        let (plan_cpu, plan_mem) = plans
            .get(&(b.job_name.to_owned(), b.task_name.to_owned()))
            .copied()
            .unwrap_or((0.0, 0.0));
        let cpu = b.cpu_avg.filter(|c| *c > 0.0).unwrap_or(plan_cpu.max(10.0)) * 10.0;
        let request = plan_cpu.max(b.cpu_max.unwrap_or(0.0)).max(cpu / 10.0) * 10.0;
        let mem = valid_percent(b.mem_avg).unwrap_or(0.0) / 100.0 * largest;
        let req_mem = valid_percent(Some(plan_mem))
            .unwrap_or(0.0)
            .max(valid_percent(b.mem_max).unwrap_or(0.0))
            / 100.0
            * largest;
        let next = job_ids.len() as u32;
        let job = *job_ids.entry(b.job_name.to_owned()).or_insert(next);
        let arrival = start;
        first_seen = first_seen.min(start);
        let key = (job, b.task_name.to_owned(), arrival / step);
        let piece = VmSpec {
            arrival_s: arrival,
            job,
            request_millicores: request.round() as u32,
            request_mib: ((req_mem.max(mem) / f64::from(1u32 << 20)).ceil() as u32).max(64),
            vcpus: 0,
            cpu_millicores: cpu.round() as u32,
            memory_mib: (mem / f64::from(1u32 << 20)) as u32,
            io_kib_per_sec: 0,
            membw: 0,
            work_s: end - start,
            fails: b.status == "Failed",
        };
        last_seen = last_seen.max(end);
        stats.instances += 1;
        if let Some(&i) = open.get(&key) {
            let v = &mut vms[i];
            if v.request_millicores + piece.request_millicores <= o.vm_max_millicores {
                v.request_millicores += piece.request_millicores;
                v.request_mib += piece.request_mib;
                v.cpu_millicores += piece.cpu_millicores;
                v.memory_mib += piece.memory_mib;
                v.work_s = v.work_s.max(piece.work_s);
                v.arrival_s = v.arrival_s.min(piece.arrival_s);
                v.fails |= piece.fails;
                return Ok(());
            }
        }
        open.insert(key, vms.len());
        vms.push(piece);
        Ok(())
    })?;
    let start = o.from_s.unwrap_or(if first_seen == u32::MAX {
        0
    } else {
        first_seen
    }) / step
        * step;
    for v in &mut vms {
        v.vcpus = v
            .request_millicores
            .div_ceil(1000)
            .clamp(1, u32::from(u16::MAX)) as u16;
        v.arrival_s -= start;
    }
    // Dense job ids in order of first arrival.
    vms.sort_by_key(|v| (v.arrival_s, v.job));
    let mut remap: HashMap<u32, u32> = HashMap::new();
    for v in &mut vms {
        let next = remap.len() as u32;
        v.job = *remap.entry(v.job).or_insert(next);
    }
    stats.jobs = remap.len();
    stats.vms = vms.len();

    // Steps and rows.
    let end = o.until_s.unwrap_or(last_seen.saturating_add(1));
    let steps = end.saturating_sub(start).div_ceil(step).max(1);
    let first_step = (start / step) as usize;
    stats.steps = steps;
    let nodes: Vec<NodeSpec> = ids
        .iter()
        .zip(&hosts_online)
        .map(|((_, m), &online)| NodeSpec {
            cpu_millicores: (m.cores * 1000.0).round() as u32,
            memory_bytes: (m.mem_size / 100.0 * largest) as u64,
            disk_bytes_per_sec: o.disk_bytes_per_sec,
            batch_pool: !online,
        })
        .collect();
    stats.nodes = nodes.len();
    stats.batch_pool = nodes.iter().filter(|n| n.batch_pool).count();
    let mut last: Vec<OnlineSample> = vec![OnlineSample::default(); n];
    let mut cpu_sum = 0.0;
    let mut cpu_count = 0u64;
    let info = TraceInfo {
        step_secs: step,
        steps,
        nodes: nodes.clone(),
        description: format!(
            "alibaba cluster-trace-v2018 from {}: {} machines, {} s from t={}",
            dir.display(),
            n,
            u64::from(steps) * u64::from(step),
            start
        ),
    };
    binary::write(
        out,
        &info,
        |s, row| {
            let base = (first_step + s as usize) * n;
            for (i, slot) in row.iter_mut().enumerate() {
                if let Some(a) = acc.get(base + i).filter(|a| a.samples > 0) {
                    let cores = nodes[i].cpu_millicores as f32 / 1000.0;
                    let w = step as f32;
                    last[i] = OnlineSample::from_shares(
                        f64::from(a.core_seconds / w / cores.max(1e-3)),
                        f64::from(a.memory_share_seconds / w),
                        f64::from(a.io_max),
                    );
                }
                *slot = last[i];
                if !nodes[i].batch_pool {
                    cpu_sum += slot.cpu_share();
                    cpu_count += 1;
                }
            }
            Ok(())
        },
        &mut vms,
    )?;
    stats.online_cpu_mean_pct = if cpu_count > 0 {
        cpu_sum / cpu_count as f64 * 100.0
    } else {
        0.0
    };

    // The trace's own machine CPU (online + batch), for comparison.
    if dir.join(Table::MachineUsage.file()).exists() {
        let (mut sum, mut count) = (0.0, 0u64);
        read_table(dir, Table::MachineUsage, |f, _| {
            let u = MachineUsage::parse(f)?;
            let t = secs(u.time_stamp);
            if let Some(c) = valid_percent(u.cpu_util_percent)
                && index.contains_key(u.machine_id)
                && t >= start
                && t < end
            {
                sum += c;
                count += 1;
            }
            Ok(())
        })?;
        stats.machine_cpu_mean_pct = (count > 0).then(|| sum / count as f64);
    }
    Ok(stats)
}
