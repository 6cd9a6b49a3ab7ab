//! The six tables of Alibaba cluster-trace-v2018, one record type each, with the columns in
//! the order of the trace's published schema (`alibaba/clusterdata`,
//! `cluster-trace-v2018/schema.txt`, which says "the index below is aligned with the data
//! column in each file"). Records borrow their text from the line being read.
//!
//! Empty numeric fields (common in the published files) read as `None`; percentages the trace
//! marks invalid (-1, 101) are kept as read and filtered by the converter.

use super::csv::{number, required, text};

/// A table of the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `machine_meta.csv`.
    MachineMeta,
    /// `machine_usage.csv`.
    MachineUsage,
    /// `container_meta.csv`.
    ContainerMeta,
    /// `container_usage.csv`.
    ContainerUsage,
    /// `batch_task.csv`.
    BatchTask,
    /// `batch_instance.csv`.
    BatchInstance,
}

impl Table {
    /// Every table.
    pub const ALL: [Self; 6] = [
        Self::MachineMeta,
        Self::MachineUsage,
        Self::ContainerMeta,
        Self::ContainerUsage,
        Self::BatchTask,
        Self::BatchInstance,
    ];

    /// The file name in the trace.
    #[must_use]
    pub const fn file(self) -> &'static str {
        match self {
            Self::MachineMeta => "machine_meta.csv",
            Self::MachineUsage => "machine_usage.csv",
            Self::ContainerMeta => "container_meta.csv",
            Self::ContainerUsage => "container_usage.csv",
            Self::BatchTask => "batch_task.csv",
            Self::BatchInstance => "batch_instance.csv",
        }
    }

    /// The column names, in file order.
    #[must_use]
    pub const fn columns(self) -> &'static [&'static str] {
        match self {
            Self::MachineMeta => &[
                "machine_id",
                "time_stamp",
                "failure_domain_1",
                "failure_domain_2",
                "cpu_num",
                "mem_size",
                "status",
            ],
            Self::MachineUsage => &[
                "machine_id",
                "time_stamp",
                "cpu_util_percent",
                "mem_util_percent",
                "mem_gps",
                "mkpi",
                "net_in",
                "net_out",
                "disk_io_percent",
            ],
            Self::ContainerMeta => &[
                "container_id",
                "machine_id",
                "time_stamp",
                "app_du",
                "status",
                "cpu_request",
                "cpu_limit",
                "mem_size",
            ],
            Self::ContainerUsage => &[
                "container_id",
                "machine_id",
                "time_stamp",
                "cpu_util_percent",
                "mem_util_percent",
                "cpi",
                "mem_gps",
                "mpki",
                "net_in",
                "net_out",
                "disk_io_percent",
            ],
            Self::BatchTask => &[
                "task_name",
                "instance_num",
                "job_name",
                "task_type",
                "status",
                "start_time",
                "end_time",
                "plan_cpu",
                "plan_mem",
            ],
            Self::BatchInstance => &[
                "instance_name",
                "task_name",
                "job_name",
                "task_type",
                "status",
                "start_time",
                "end_time",
                "machine_id",
                "seq_no",
                "total_seq_no",
                "cpu_avg",
                "cpu_max",
                "mem_avg",
                "mem_max",
            ],
        }
    }
}

/// A row of `machine_meta.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineMeta<'a> {
    /// Machine id (`m_1932`).
    pub machine_id: &'a str,
    /// Seconds since the trace start (0: before or after the 8 days).
    pub time_stamp: f64,
    /// First-level failure domain.
    pub failure_domain_1: Option<f64>,
    /// Second-level failure domain.
    pub failure_domain_2: &'a str,
    /// Cores.
    pub cpu_num: Option<f64>,
    /// Memory, normalised to the largest machine (0..100).
    pub mem_size: Option<f64>,
    /// Status (`USING`, …).
    pub status: &'a str,
}

impl<'a> MachineMeta<'a> {
    /// Parses a row's fields.
    ///
    /// # Errors
    /// A message naming the bad column.
    pub fn parse(f: &[&'a str]) -> Result<Self, String> {
        Ok(Self {
            machine_id: text(f, 0, "machine_id")?,
            time_stamp: required(f, 1, "time_stamp")?,
            failure_domain_1: number(f, 2, "failure_domain_1")?,
            failure_domain_2: f[3].trim(),
            cpu_num: number(f, 4, "cpu_num")?,
            mem_size: number(f, 5, "mem_size")?,
            status: f[6].trim(),
        })
    }
}

/// A row of `machine_usage.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineUsage<'a> {
    /// Machine id.
    pub machine_id: &'a str,
    /// Seconds since the trace start.
    pub time_stamp: f64,
    /// CPU utilisation, percent (user + system; batch included).
    pub cpu_util_percent: Option<f64>,
    /// Memory utilisation, percent.
    pub mem_util_percent: Option<f64>,
    /// Memory bandwidth, normalised 0..100.
    pub mem_gps: Option<f64>,
    /// Cache misses per thousand instructions.
    pub mkpi: Option<f64>,
    /// Incoming network traffic, normalised 0..100.
    pub net_in: Option<f64>,
    /// Outgoing network traffic, normalised 0..100.
    pub net_out: Option<f64>,
    /// Disk IO utilisation, percent.
    pub disk_io_percent: Option<f64>,
}

impl<'a> MachineUsage<'a> {
    /// Parses a row's fields.
    ///
    /// # Errors
    /// A message naming the bad column.
    pub fn parse(f: &[&'a str]) -> Result<Self, String> {
        Ok(Self {
            machine_id: text(f, 0, "machine_id")?,
            time_stamp: required(f, 1, "time_stamp")?,
            cpu_util_percent: number(f, 2, "cpu_util_percent")?,
            mem_util_percent: number(f, 3, "mem_util_percent")?,
            mem_gps: number(f, 4, "mem_gps")?,
            mkpi: number(f, 5, "mkpi")?,
            net_in: number(f, 6, "net_in")?,
            net_out: number(f, 7, "net_out")?,
            disk_io_percent: number(f, 8, "disk_io_percent")?,
        })
    }
}

/// A row of `container_meta.csv` (an online container's event).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContainerMeta<'a> {
    /// Container id (`c_1`).
    pub container_id: &'a str,
    /// Its machine.
    pub machine_id: &'a str,
    /// Seconds since the trace start.
    pub time_stamp: f64,
    /// Deploy unit (application group).
    pub app_du: &'a str,
    /// Status.
    pub status: &'a str,
    /// Requested CPU, 100 = one core.
    pub cpu_request: Option<f64>,
    /// CPU limit, 100 = one core.
    pub cpu_limit: Option<f64>,
    /// Memory, normalised to the largest machine (0..100).
    pub mem_size: Option<f64>,
}

impl<'a> ContainerMeta<'a> {
    /// Parses a row's fields.
    ///
    /// # Errors
    /// A message naming the bad column.
    pub fn parse(f: &[&'a str]) -> Result<Self, String> {
        Ok(Self {
            container_id: text(f, 0, "container_id")?,
            machine_id: text(f, 1, "machine_id")?,
            time_stamp: required(f, 2, "time_stamp")?,
            app_du: f[3].trim(),
            status: f[4].trim(),
            cpu_request: number(f, 5, "cpu_request")?,
            cpu_limit: number(f, 6, "cpu_limit")?,
            mem_size: number(f, 7, "mem_size")?,
        })
    }
}

/// A row of `container_usage.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContainerUsage<'a> {
    /// Container id.
    pub container_id: &'a str,
    /// Its machine.
    pub machine_id: &'a str,
    /// Seconds since the trace start.
    pub time_stamp: f64,
    /// CPU used, percent of the container's requested CPU, not of the machine's (the trace
    /// maintainers' answer in <https://github.com/alibaba/clusterdata/issues/62>).
    pub cpu_util_percent: Option<f64>,
    /// Memory used, percent of the container's memory size.
    pub mem_util_percent: Option<f64>,
    /// Cycles per instruction.
    pub cpi: Option<f64>,
    /// Memory bandwidth, normalised 0..100.
    pub mem_gps: Option<f64>,
    /// Cache misses per thousand instructions.
    pub mpki: Option<f64>,
    /// Incoming network traffic, normalised 0..100.
    pub net_in: Option<f64>,
    /// Outgoing network traffic, normalised 0..100.
    pub net_out: Option<f64>,
    /// Disk IO utilisation, percent.
    pub disk_io_percent: Option<f64>,
}

impl<'a> ContainerUsage<'a> {
    /// Parses a row's fields.
    ///
    /// # Errors
    /// A message naming the bad column.
    pub fn parse(f: &[&'a str]) -> Result<Self, String> {
        Ok(Self {
            container_id: text(f, 0, "container_id")?,
            machine_id: text(f, 1, "machine_id")?,
            time_stamp: required(f, 2, "time_stamp")?,
            cpu_util_percent: number(f, 3, "cpu_util_percent")?,
            mem_util_percent: number(f, 4, "mem_util_percent")?,
            cpi: number(f, 5, "cpi")?,
            mem_gps: number(f, 6, "mem_gps")?,
            mpki: number(f, 7, "mpki")?,
            net_in: number(f, 8, "net_in")?,
            net_out: number(f, 9, "net_out")?,
            disk_io_percent: number(f, 10, "disk_io_percent")?,
        })
    }
}

/// A row of `batch_task.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchTask<'a> {
    /// Task name, unique within its job; encodes the DAG (`M5_3_4` depends on tasks 3 and 4).
    pub task_name: &'a str,
    /// Instances of the task.
    pub instance_num: Option<f64>,
    /// Job name.
    pub job_name: &'a str,
    /// Task type.
    pub task_type: &'a str,
    /// Status.
    pub status: &'a str,
    /// Start, seconds since the trace start.
    pub start_time: Option<f64>,
    /// End, seconds since the trace start.
    pub end_time: Option<f64>,
    /// Planned CPU per instance, 100 = one core.
    pub plan_cpu: Option<f64>,
    /// Planned memory per instance, normalised to the largest machine (0..100).
    pub plan_mem: Option<f64>,
}

impl<'a> BatchTask<'a> {
    /// Parses a row's fields.
    ///
    /// # Errors
    /// A message naming the bad column.
    pub fn parse(f: &[&'a str]) -> Result<Self, String> {
        Ok(Self {
            task_name: text(f, 0, "task_name")?,
            instance_num: number(f, 1, "instance_num")?,
            job_name: text(f, 2, "job_name")?,
            task_type: f[3].trim(),
            status: f[4].trim(),
            start_time: number(f, 5, "start_time")?,
            end_time: number(f, 6, "end_time")?,
            plan_cpu: number(f, 7, "plan_cpu")?,
            plan_mem: number(f, 8, "plan_mem")?,
        })
    }
}

/// A row of `batch_instance.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchInstance<'a> {
    /// Instance name.
    pub instance_name: &'a str,
    /// Its task.
    pub task_name: &'a str,
    /// Its job.
    pub job_name: &'a str,
    /// Task type.
    pub task_type: &'a str,
    /// Status (`Terminated`, `Failed`, `Running`, …).
    pub status: &'a str,
    /// Start, seconds since the trace start.
    pub start_time: Option<f64>,
    /// End, seconds since the trace start.
    pub end_time: Option<f64>,
    /// The machine it ran on (the simulator places it anew).
    pub machine_id: &'a str,
    /// Sequence number.
    pub seq_no: Option<f64>,
    /// Total sequence number.
    pub total_seq_no: Option<f64>,
    /// Mean CPU, 100 = one core.
    pub cpu_avg: Option<f64>,
    /// Peak CPU, 100 = one core.
    pub cpu_max: Option<f64>,
    /// Mean memory, normalised to the largest machine (0..100).
    pub mem_avg: Option<f64>,
    /// Peak memory, normalised to the largest machine (0..100).
    pub mem_max: Option<f64>,
}

impl<'a> BatchInstance<'a> {
    /// Parses a row's fields.
    ///
    /// # Errors
    /// A message naming the bad column.
    pub fn parse(f: &[&'a str]) -> Result<Self, String> {
        Ok(Self {
            instance_name: text(f, 0, "instance_name")?,
            task_name: text(f, 1, "task_name")?,
            job_name: text(f, 2, "job_name")?,
            task_type: f[3].trim(),
            status: f[4].trim(),
            start_time: number(f, 5, "start_time")?,
            end_time: number(f, 6, "end_time")?,
            machine_id: f[7].trim(),
            seq_no: number(f, 8, "seq_no")?,
            total_seq_no: number(f, 9, "total_seq_no")?,
            cpu_avg: number(f, 10, "cpu_avg")?,
            cpu_max: number(f, 11, "cpu_max")?,
            mem_avg: number(f, 12, "mem_avg")?,
            mem_max: number(f, 13, "mem_max")?,
        })
    }
}
