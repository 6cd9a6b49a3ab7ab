//! colo-vmm against QEMU microvm on the same workload-guest ELF, side by side in one run.
//!
//! `cargo bench -p colo-vmm --bench vmm_vs_qemu` (or `scripts/bench-vmm.sh`, which installs
//! QEMU first). Measures, alternating colo and QEMU (A B A B ...):
//! * start → first serial byte and start → exit of `exit=0` (1 vCPU, 128 MiB), with the peak RSS
//!   of the VMM process (wait4 rusage);
//! * private memory (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) averaged over 20
//!   idle VMs (`hold=60`, no prefault);
//! * wall time to start 20 `exit=0` VMs at once and see them all exit.
//!
//! Environment: `COLO_BENCH_PAIRS` (default 20), `COLO_BENCH_ROUNDS` (default 5) for the 20-VM
//! figures. `COLO_VMM_BIN=PATH` measures that colo-vmm binary instead of the one cargo built;
//! `COLO_BENCH_BASELINE=PATH` puts a second colo-vmm binary (e.g. one built from an older commit)
//! in QEMU's place, so two builds are compared in one alternating run (QEMU is not needed then).
//! `COLO_BENCH_JAIL_UID=UID` (root only) runs the colo-vmm under test jailed (`--jail-uid`),
//! each VM as its own uid from UID up; with `COLO_BENCH_BASELINE` naming the same binary, the
//! run measures what the jail costs.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const MEMORY_MIB: &str = "128";
const IDLE_VMS: usize = 20;

/// The next jail uid offset (`COLO_BENCH_JAIL_UID`): every VM its own uid, as the agent does.
static NEXT_JAIL: AtomicU32 = AtomicU32::new(0);

/// `--jail-uid U --jail-gid U` for the next VM, when `COLO_BENCH_JAIL_UID` is set.
fn jail_args() -> Vec<String> {
    let Some(base) = std::env::var("COLO_BENCH_JAIL_UID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return Vec::new();
    };
    let uid = (base + NEXT_JAIL.fetch_add(1, Ordering::Relaxed) % 1000).to_string();
    vec!["--jail-uid".into(), uid.clone(), "--jail-gid".into(), uid]
}

#[derive(Clone, Copy, PartialEq)]
enum Vmm {
    /// The colo-vmm under test (`COLO_VMM_BIN`, or the one cargo built).
    Colo,
    /// Another colo-vmm binary (`COLO_BENCH_BASELINE`), in QEMU's place.
    Baseline,
    Qemu,
}

impl Vmm {
    fn name(self) -> &'static str {
        match self {
            Vmm::Colo => "colo-vmm",
            Vmm::Baseline => "baseline colo-vmm",
            Vmm::Qemu => "QEMU microvm",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Vmm::Colo => "colo",
            Vmm::Baseline => "baseline",
            Vmm::Qemu => "QEMU",
        }
    }

    fn command(self, guest: &str, cmdline: &str) -> Command {
        let colo = |bin: String| {
            let mut c = Command::new(bin);
            c.args(["run", "--kernel", guest, "--memory-mib", MEMORY_MIB])
                .args(["--cmdline", cmdline]);
            c
        };
        match self {
            Vmm::Colo => {
                let mut c = colo(
                    std::env::var("COLO_VMM_BIN")
                        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_colo-vmm").to_string()),
                );
                c.args(jail_args());
                c
            }
            Vmm::Baseline => colo(std::env::var("COLO_BENCH_BASELINE").expect("baseline binary")),
            Vmm::Qemu => {
                let mut c = Command::new("qemu-system-x86_64");
                c.args([
                    "-M",
                    "microvm",
                    "-enable-kvm",
                    "-nodefaults",
                    "-no-user-config",
                ])
                .args(["-nographic", "-serial", "stdio"])
                .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
                .args(["-m", MEMORY_MIB, "-kernel", guest, "-append", cmdline]);
                c
            }
        }
    }
}

/// One boot: start → first serial byte, start → exit, peak RSS (KiB).
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also returns the peak RSS"
)]
fn one_boot(vmm: Vmm, guest: &str) -> (f64, f64, f64) {
    let t0 = Instant::now();
    let mut child = vmm
        .command(guest, "exit=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn VMM");
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    out.read_exact(&mut first).expect("no serial output");
    let t_first = t0.elapsed();
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    let (status, maxrss_kib) = wait4(&child);
    let t_exit = t0.elapsed();
    let expected = if vmm == Vmm::Qemu { 1 } else { 0 };
    assert_eq!(status, expected, "{} exit status", vmm.name());
    (ms(t_first), ms(t_exit), maxrss_kib as f64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits for the child; returns its exit code and peak RSS (KiB).
fn wait4(child: &Child) -> (i32, i64) {
    let mut status = 0;
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: waits for our own child and fills the rusage we pass.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, ru.as_mut_ptr()) };
    assert_eq!(rc, child.id() as i32, "wait4");
    // SAFETY: wait4 succeeded and filled the struct.
    let ru = unsafe { ru.assume_init() };
    (libc::WEXITSTATUS(status), ru.ru_maxrss)
}

/// Starts 20 idle VMs, waits for their markers, averages private memory and RSS (MiB).
fn idle_memory(vmm: Vmm, guest: &str) -> (f64, f64) {
    let mut children: Vec<Child> = (0..IDLE_VMS)
        .map(|_| {
            vmm.command(guest, "hold=60")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn VMM")
        })
        .collect();
    let mut readers = Vec::new();
    for c in &mut children {
        let mut r = BufReader::new(c.stdout.take().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).expect("marker");
        assert!(line.contains("colo-guest: up"), "{line}");
        readers.push(r);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (mut private, mut rss) = (0.0, 0.0);
    for c in &children {
        let text = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", c.id())).unwrap();
        let field = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        private += field("Private_Clean:") + field("Private_Dirty:");
        rss += field("Rss:");
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let n = IDLE_VMS as f64;
    (private / n / 1024.0, rss / n / 1024.0)
}

/// Starts 20 `exit=0` VMs at once; wall time until all have exited (ms).
fn twenty_at_once(vmm: Vmm, guest: &str) -> f64 {
    let t0 = Instant::now();
    let mut children: Vec<Child> = (0..IDLE_VMS)
        .map(|_| {
            vmm.command(guest, "exit=0")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn VMM")
        })
        .collect();
    for c in &mut children {
        let s = c.wait().unwrap();
        assert!(s.code().is_some(), "{} died: {s}", vmm.name());
    }
    ms(t0.elapsed())
}

struct Series(Vec<f64>);

impl Series {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
    fn cell(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median(),
            self.min(),
            self.max(),
            d = digits
        )
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not have.
    let guest = colo_vmm::workload_guest_path().expect("workload guest");
    let guest = guest.to_str().unwrap();
    let other = match std::env::var_os("COLO_BENCH_BASELINE") {
        Some(_) => Vmm::Baseline,
        None => Vmm::Qemu,
    };
    if other == Vmm::Qemu
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!(
            "qemu-system-x86_64 not found: apt-get install qemu-system-x86 (scripts/bench-vmm.sh does)"
        );
        // `cargo test --all-targets` runs this without `--bench`: QEMU is a benchmark-only
        // dependency, so the test run skips loudly; `cargo bench` fails.
        if !std::env::args().any(|a| a == "--bench") {
            eprintln!("SKIPPED: vmm_vs_qemu needs QEMU for the side-by-side comparison");
            std::process::exit(0);
        }
        std::process::exit(1);
    }
    // `cargo test --all-targets` runs this without `--bench`: a smoke run (both VMMs boot, exit
    // and print the table), not the measurement.
    let measuring = std::env::args().any(|a| a == "--bench");
    let pairs = env_usize("COLO_BENCH_PAIRS", if measuring { 20 } else { 2 });
    let rounds = env_usize("COLO_BENCH_ROUNDS", if measuring { 5 } else { 1 });
    let load_before = load();
    eprintln!("warming up (page cache, KVM module state)...");
    for vmm in [Vmm::Colo, other] {
        for _ in 0..3 {
            one_boot(vmm, guest);
        }
    }

    let mut first = [Vec::new(), Vec::new()];
    let mut exit = [Vec::new(), Vec::new()];
    let mut rss = [Vec::new(), Vec::new()];
    for i in 0..pairs {
        for (k, vmm) in [Vmm::Colo, other].into_iter().enumerate() {
            let (f, e, r) = one_boot(vmm, guest);
            first[k].push(f);
            exit[k].push(e);
            rss[k].push(r / 1024.0);
        }
        eprintln!(
            "pair {i:>2}: colo {:.1}/{:.1} ms, {} {:.1}/{:.1} ms",
            first[0][i],
            exit[0][i],
            other.short(),
            first[1][i],
            exit[1][i]
        );
    }
    let mut private = [Vec::new(), Vec::new()];
    let mut idle_rss = [Vec::new(), Vec::new()];
    let mut concurrent = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        for (k, vmm) in [Vmm::Colo, other].into_iter().enumerate() {
            let t = twenty_at_once(vmm, guest);
            concurrent[k].push(t);
            if r < 3 {
                let (p, rs) = idle_memory(vmm, guest);
                private[k].push(p);
                idle_rss[k].push(rs);
            }
        }
        eprintln!(
            "round {r}: 20 at once colo {:.0} ms, {} {:.0} ms",
            concurrent[0][r],
            other.short(),
            concurrent[1][r]
        );
    }
    let load_after = load();

    let rows: [(&str, &[Vec<f64>; 2], usize); 6] = [
        ("start → first serial byte (ms)", &first, 1),
        ("start → exit (ms)", &exit, 1),
        ("peak RSS (MiB)", &rss, 1),
        ("private memory per idle VM (MiB, 20 VMs)", &private, 2),
        ("RSS per idle VM (MiB, 20 VMs)", &idle_rss, 1),
        ("20 VMs started at once → all exited (ms)", &concurrent, 0),
    ];
    println!(
        "\nworkload guest `exit=0` / `hold=60`, 1 vCPU, 128 MiB; {pairs} alternating pairs, {rounds} rounds of 20 VMs (idle memory: 3 rounds); colo-vmm under test jailed: {}; load before {load_before}, after {load_after}\n",
        if jail_args().is_empty() {
            "no"
        } else {
            "yes (one uid per VM)"
        }
    );
    println!(
        "| metric | colo-vmm median (min–max) | {} median (min–max) | colo/{} |",
        other.name(),
        other.short()
    );
    println!("|---|---|---|---|");
    for (name, data, digits) in rows {
        let a = Series(data[0].clone());
        let b = Series(data[1].clone());
        println!(
            "| {name} | {} | {} | {:.2} |",
            a.cell(digits),
            b.cell(digits),
            a.median() / b.median()
        );
    }
}
