//! Run-queue delay of an online service's threads, from `/proc/<tid>/schedstat` (second field:
//! ns spent runnable but waiting for a CPU).
//!
//! The threads are listed from the service's cgroups (and their descendants): v1 `tasks` in the
//! cpu hierarchy, v2 `cgroup.threads`. Listing walks directories and allocates, so it runs at a
//! slower cadence ([`OnlineTasks::refresh`]); each tick only re-reads the open schedstat files.

use std::path::{Path, PathBuf};

use crate::host::statfile::{StatFile, fields, parse_u64};

/// Most threads followed per service (a bound on open files and per-tick cost).
pub const MAX_TASKS: usize = 4096;

#[derive(Debug)]
struct Task {
    tid: u32,
    file: Option<StatFile>,
    last_delay: u64,
    last_cpu: u64,
    last_slices: u64,
}

/// The threads of one online service and their schedstat files.
#[derive(Debug)]
pub struct OnlineTasks {
    dirs: Vec<PathBuf>,
    list_file: &'static str,
    proc_root: PathBuf,
    tasks: Vec<Task>,
    scratch: Vec<u32>,
    truncated: bool,
}

/// What one tick read from the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskDeltas {
    /// Run-queue wait since the last read, summed over the threads, ns.
    pub run_delay_ns: u64,
    /// On-CPU time since the last read, summed, ns.
    pub cpu_ns: u64,
    /// Time slices run since the last read (times a thread was put on a CPU), summed.
    pub slices: u64,
    /// Threads read.
    pub tasks: usize,
}

impl OnlineTasks {
    /// Follows the threads listed in `list_file` (`tasks` on v1, `cgroup.threads` on v2) of
    /// `dirs` and their descendants.
    pub fn new(dirs: Vec<PathBuf>, list_file: &'static str) -> Self {
        Self::with_proc(dirs, list_file, PathBuf::from("/proc"))
    }

    fn with_proc(dirs: Vec<PathBuf>, list_file: &'static str, proc_root: PathBuf) -> Self {
        Self {
            dirs,
            list_file,
            proc_root,
            tasks: Vec::new(),
            scratch: Vec::new(),
            truncated: false,
        }
    }

    /// The cgroup directories followed.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Threads followed now.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no thread is followed.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Whether the last refresh found more than [`MAX_TASKS`] threads.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Lists the threads again: new ones are opened (their first read sets the baseline), gone
    /// ones dropped. Missing cgroup directories are skipped (a service not started yet).
    pub fn refresh(&mut self) {
        self.scratch.clear();
        for d in &self.dirs {
            collect(d, self.list_file, &mut self.scratch, 0);
        }
        self.scratch.sort_unstable();
        self.scratch.dedup();
        self.truncated = self.scratch.len() > MAX_TASKS;
        self.scratch.truncate(MAX_TASKS);
        let scratch = &self.scratch;
        self.tasks
            .retain(|t| t.file.is_some() && scratch.binary_search(&t.tid).is_ok());
        // `tasks` stays sorted by tid: look-ups are binary searches.
        let known = self.tasks.len();
        for &tid in scratch {
            if self.tasks[..known]
                .binary_search_by_key(&tid, |t| t.tid)
                .is_ok()
            {
                continue;
            }
            let path = self.proc_root.join(tid.to_string()).join("schedstat");
            let Ok(mut file) = StatFile::open(&path) else {
                continue;
            };
            let Some(st) = file.read().ok().and_then(parse_schedstat) else {
                continue;
            };
            self.tasks.push(Task {
                tid,
                file: Some(file),
                last_delay: st.delay,
                last_cpu: st.cpu,
                last_slices: st.slices,
            });
        }
        self.tasks.sort_unstable_by_key(|t| t.tid);
    }

    /// Reads every followed thread; threads that exited are dropped at the next refresh.
    pub fn read(&mut self) -> TaskDeltas {
        let mut d = TaskDeltas::default();
        for t in &mut self.tasks {
            let Some(f) = t.file.as_mut() else { continue };
            match f.read().ok().and_then(parse_schedstat) {
                Some(st) => {
                    d.run_delay_ns += st.delay.saturating_sub(t.last_delay);
                    d.cpu_ns += st.cpu.saturating_sub(t.last_cpu);
                    d.slices += st.slices.saturating_sub(t.last_slices);
                    t.last_delay = st.delay;
                    t.last_cpu = st.cpu;
                    t.last_slices = st.slices;
                    d.tasks += 1;
                }
                None => t.file = None,
            }
        }
        d
    }
}

/// One thread's `/proc/<tid>/schedstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedStat {
    /// On-CPU time, ns.
    pub cpu: u64,
    /// Time runnable but waiting for a CPU, ns.
    pub delay: u64,
    /// Time slices run on a CPU.
    pub slices: u64,
}

/// `/proc/<tid>/schedstat`: on-CPU ns, run-queue wait ns, time slices.
pub fn parse_schedstat(text: &[u8]) -> Option<SchedStat> {
    let mut f = fields(text);
    let cpu = parse_u64(f.next()?)?;
    let delay = parse_u64(f.next()?)?;
    let slices = parse_u64(f.next()?)?;
    Some(SchedStat { cpu, delay, slices })
}

/// Reads `dir/list_file` and recurses into child cgroups (bounded depth).
fn collect(dir: &Path, list_file: &str, out: &mut Vec<u32>, depth: u32) {
    if depth > 16 || out.len() > MAX_TASKS {
        return;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(list_file)) {
        out.extend(
            text.split_ascii_whitespace()
                .filter_map(|t| t.parse::<u32>().ok()),
        );
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&e.path(), list_file, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_fields() {
        assert_eq!(
            parse_schedstat(b"123 456 7\n"),
            Some(SchedStat {
                cpu: 123,
                delay: 456,
                slices: 7
            })
        );
        assert_eq!(parse_schedstat(b"123\n"), None);
        assert_eq!(parse_schedstat(b"123 456\n"), None);
    }

    #[test]
    fn threads_are_listed_recursively_and_deltas_summed() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("cg");
        let proc_root = dir.path().join("proc");
        std::fs::create_dir_all(cg.join("child")).unwrap();
        std::fs::write(cg.join("tasks"), "10\n11\n").unwrap();
        std::fs::write(cg.join("child/tasks"), "12\n").unwrap();
        for (tid, delay) in [(10, 100), (11, 1000), (12, 5)] {
            std::fs::create_dir_all(proc_root.join(tid.to_string())).unwrap();
            std::fs::write(
                proc_root.join(format!("{tid}/schedstat")),
                format!("1 {delay} 1\n"),
            )
            .unwrap();
        }
        let mut t = OnlineTasks::with_proc(
            vec![cg.clone(), dir.path().join("absent")],
            "tasks",
            proc_root.clone(),
        );
        t.refresh();
        assert_eq!(t.len(), 3);
        // The first read after opening is the baseline.
        assert_eq!(t.read().run_delay_ns, 0);
        std::fs::write(proc_root.join("10/schedstat"), "5 150 4\n").unwrap();
        std::fs::write(proc_root.join("12/schedstat"), "1 25 2\n").unwrap();
        let d = t.read();
        assert_eq!((d.run_delay_ns, d.cpu_ns, d.slices, d.tasks), (70, 4, 4, 3));
        // Thread 11 exits: its file disappears, it is dropped at the next refresh.
        std::fs::remove_dir_all(proc_root.join("11")).unwrap();
        std::fs::write(cg.join("tasks"), "10\n").unwrap();
        t.refresh();
        assert_eq!(t.len(), 2);
        assert_eq!(t.read().run_delay_ns, 0);
    }

    #[test]
    fn own_threads_are_read_from_procfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tasks"),
            format!("{}\n", nix::unistd::gettid()),
        )
        .unwrap();
        let mut t = OnlineTasks::new(vec![dir.path().to_path_buf()], "tasks");
        t.refresh();
        assert_eq!(t.len(), 1);
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_add(i ^ (i >> 3));
        }
        std::hint::black_box(x);
        assert!(t.read().cpu_ns > 0);
    }
}
