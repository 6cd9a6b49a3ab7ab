//! The IO path: device cost without a guest, end to end from the workload guest, rate-limit
//! accuracy, and how fast a live `set_io_limit` shows.
//!
//! `cargo bench -p colo-vmm --bench io_path` (or `scripts/bench-io.sh`, which installs fio).
//! Needs KVM for the guest parts; writes a 512 MiB file under `$COLO_BENCH_DIR` (default
//! /var/tmp), which must be on a filesystem with O_DIRECT.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colo_vmm::ControlClient;
use colo_vmm::device_bench::{self, Pattern};

const MIB: u64 = 1 << 20;

fn vmm() -> &'static str {
    env!("CARGO_BIN_EXE_colo-vmm")
}

/// A 512 MiB file of real (allocated, written) blocks.
fn make_file(dir: &Path) -> PathBuf {
    let path = dir.join("colo-io-bench.img");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == 512 * MIB) {
        return path;
    }
    let st = Command::new("dd")
        .args([
            "if=/dev/urandom",
            "bs=1M",
            "count=512",
            "oflag=direct",
            "status=none",
        ])
        .arg(format!("of={}", path.display()))
        .status()
        .expect("dd");
    assert!(st.success());
    path
}

/// fio with one synchronous thread (what the IO thread does), or None without fio.
fn fio(file: &Path, rw: &str, bs: &str, seconds: u32) -> Option<(f64, f64)> {
    let out = Command::new("fio")
        .args([
            "--name=colo",
            "--direct=1",
            "--ioengine=psync",
            "--numjobs=1",
        ])
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--runtime={seconds}"))
        .args(["--time_based", "--output-format=terse", "--terse-version=3"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.trim().split(';').collect();
    if f.len() < 90 {
        return None;
    }
    // terse v3: read bw KiB/s at 6, read iops at 7; write bw at 47, write iops at 48;
    // usr/sys CPU % at 87/88.
    let (bw, cpu) = if rw.contains("write") {
        (
            f[47].parse::<f64>().ok()?,
            f[87].trim_end_matches('%').parse::<f64>().ok()?
                + f[88].trim_end_matches('%').parse::<f64>().ok()?,
        )
    } else {
        (
            f[6].parse::<f64>().ok()?,
            f[87].trim_end_matches('%').parse::<f64>().ok()?
                + f[88].trim_end_matches('%').parse::<f64>().ok()?,
        )
    };
    Some((bw * 1024.0, cpu / 100.0))
}

fn device_table(file: &Path) {
    println!("\n### Device cost without a guest (host harness → colo-io thread, O_DIRECT file)\n");
    println!(
        "| IO | colo-io: MiB/s | IOPS | IO-thread CPU s per GiB | fio psync direct: MiB/s | fio CPU s per GiB |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, pattern, block, ops, rw, bs) in [
        (
            "seq read 128 KiB",
            Pattern::SeqRead,
            128 << 10,
            4096u64,
            "read",
            "128k",
        ),
        (
            "seq write 128 KiB",
            Pattern::SeqWrite,
            128 << 10,
            4096,
            "write",
            "128k",
        ),
        (
            "rand read 4 KiB",
            Pattern::RandRead,
            4096,
            20000,
            "randread",
            "4k",
        ),
        (
            "rand write 4 KiB",
            Pattern::RandWrite,
            4096,
            20000,
            "randwrite",
            "4k",
        ),
    ] {
        let r = device_bench::run(file, pattern, block, 8, ops).expect("device bench");
        let mibs = r.bytes as f64 / MIB as f64 / r.seconds;
        let gib = r.bytes as f64 / (1u64 << 30) as f64;
        let (fio_mibs, fio_cpu) = match fio(file, rw, bs, 5) {
            Some((bw, cpu)) => (
                format!("{:.0}", bw / MIB as f64),
                format!("{:.2}", cpu * 5.0 / (bw * 5.0 / (1u64 << 30) as f64)),
            ),
            None => ("(no fio)".into(), "-".into()),
        };
        println!(
            "| {name} | {mibs:.0} | {:.0} | {:.2} | {fio_mibs} | {fio_cpu} |",
            r.ops as f64 / r.seconds,
            r.io_thread_cpu_seconds / gib,
        );
    }
}

struct GuestVm {
    child: Child,
    ctl: PathBuf,
    _dir: tempfile::TempDir,
}

impl GuestVm {
    fn start(cmdline: &str, disk: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ctl = dir.path().join("ctl.sock");
        let mut child = Command::new(vmm())
            .args(["run", "--kernel"])
            .arg(colo_vmm::workload_guest_path().unwrap())
            .args(["--cmdline", cmdline, "--disk", disk, "--control-socket"])
            .arg(&ctl)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("started"), "{line}");
        Self {
            child,
            ctl,
            _dir: dir,
        }
    }
    fn client(&self) -> ControlClient {
        ControlClient::connect(&self.ctl).unwrap()
    }
}

impl Drop for GuestVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn end_to_end(file: &Path) {
    println!("\n### End to end from the workload guest (128 KiB requests, 8 in flight, polling)\n");
    println!(
        "| IO | MiB/s | VMM CPU s per GiB | user-space exits per request | KVM exits per request (notify) |"
    );
    println!("|---|---|---|---|---|");
    for mode in ["read", "write"] {
        // `forever`: the guest goes on until the VM is dropped. Once through 448 MiB, it would
        // exit with its VM, and a disk that writes it within the 600 ms window (CI, 11:40 UTC
        // 2026-11-29) left the stats call below a broken control socket.
        let vm = GuestVm::start(
            &format!("io={mode}:448:forever"),
            &file.display().to_string(),
        );
        let mut c = vm.client();
        let s0 = c.stats().unwrap();
        let t0 = Instant::now();
        let cpu0: u64 = s0.vcpus.iter().map(|v| v.cpu_ns).sum();
        std::thread::sleep(Duration::from_millis(600));
        let s1 = c.stats().unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let bytes = s1.progress - s0.progress;
        let d = &s1.disks[0];
        let ops = d.ops - s0.disks[0].ops;
        let exits = (s1.exits.io + s1.exits.mmio) - (s0.exits.io + s0.exits.mmio);
        let io_cpu = std::fs::read_to_string(format!(
            "/proc/{}/task/{}/schedstat",
            s1.pid,
            s1.io_tid.unwrap()
        ))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
        let _ = cpu0;
        println!(
            "| guest {mode} | {:.0} | {:.2} (IO thread, since start) | {:.3} | 1 |",
            bytes as f64 / MIB as f64 / secs,
            io_cpu as f64 / 1e9 / (s1.disks[0].read_bytes + s1.disks[0].write_bytes) as f64
                * (1u64 << 30) as f64,
            exits as f64 / ops.max(1) as f64,
        );
        let _ = c.shutdown();
    }
}

fn rate_accuracy(file: &Path) {
    println!("\n### Rate-limit accuracy (guest `io=read`, 5 s window after the first 2 MiB)\n");
    println!("| limit | measured MiB/s | error |");
    println!("|---|---|---|");
    for limit in [4u64, 8, 16, 64] {
        let vm = GuestVm::start(
            &format!("io=read:{} exit=0", (limit * 8).min(448)),
            &format!("{},ro,bw={limit}MiB", file.display()),
        );
        let mut c = vm.client();
        while c.stats().unwrap().progress < 2 * MIB {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (p0, t0) = (c.stats().unwrap().progress, Instant::now());
        std::thread::sleep(Duration::from_secs(5));
        let p1 = c.stats().unwrap().progress;
        let rate = (p1 - p0) as f64 / t0.elapsed().as_secs_f64() / MIB as f64;
        println!(
            "| {limit} MiB/s | {rate:.2} | {:+.2} % |",
            (rate - limit as f64) / limit as f64 * 100.0
        );
        let _ = c.shutdown();
    }
}

fn set_limit_latency(file: &Path) {
    // From 1 MiB/s (one 128 KiB request per 125 ms) to unlimited: how long after the reply does
    // the guest's progress show two more requests, which the old limit allows only 250 ms later?
    let mut lat = Vec::new();
    for _ in 0..7 {
        let vm = GuestVm::start(
            "io=read:64 exit=0",
            &format!("{},ro,bw=1MiB", file.display()),
        );
        let mut c = vm.client();
        while c.stats().unwrap().progress < MIB {
            std::thread::sleep(Duration::from_millis(5));
        }
        let p0 = c.stats().unwrap().progress;
        let t0 = Instant::now();
        c.set_io_limit("0", 0, 0).unwrap();
        loop {
            if c.stats().unwrap().progress >= p0 + 256 * 1024 {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
        let _ = c.shutdown();
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "\n### Live set_io_limit (1 MiB/s → unlimited): time until 2 more requests complete\n\nmedian {:.1} ms (min {:.1}, max {:.1}, {} runs; the old limit would take 250 ms)",
        lat[lat.len() / 2],
        lat[0],
        lat[lat.len() - 1],
        lat.len()
    );
}

fn main() {
    let dir = PathBuf::from(std::env::var("COLO_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));
    let file = make_file(&dir);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "IO path benchmark on {} (load {})",
        file.display(),
        load.trim()
    );
    device_table(&file);
    end_to_end(&file);
    rate_accuracy(&file);
    set_limit_latency(&file);
}
