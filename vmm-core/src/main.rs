//! `colo-vmm`: runs one MicroVM per process (see `docs/vmm.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use colo_vmm::{DiskConfig, EXIT_BAD_INPUT, JailIds, SerialTarget, VmConfig};

#[derive(Debug, Parser)]
#[command(
    name = "colo-vmm",
    version,
    about = "colo's MicroVM monitor: one KVM guest per process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a kernel and run it to its end; the exit status is the guest's (see docs/vmm.md).
    Run(Box<RunArgs>),
    /// Print the path of colo's workload guest ELF.
    GuestPath,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Kernel: an ELF (colo's workload guest, or a vmlinux with a PVH note) or a bzImage.
    #[arg(long)]
    kernel: PathBuf,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: u64,
    /// Where the guest's serial console goes: `stdout` or a file path (appended to).
    #[arg(long, default_value = "stdout")]
    serial: String,
    /// The VMM's own log file (appended to); messages also go to stderr.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Bound the serial file and the log file: each keeps at most SIZE bytes with its older
    /// half (PATH.1), dropping the oldest output; stdout and stderr take at most SIZE bytes
    /// each (units: 16MiB; at least 4096). Unbounded without it.
    #[arg(long, value_name = "SIZE", value_parser = parse_log_limit)]
    log_limit: Option<u64>,
    /// Unix socket for control requests (pause, resume, stats, shutdown, set_io_limit).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Write a JSON record of how the VM ended to this path (atomically).
    #[arg(long)]
    exit_record: Option<PathBuf>,
    /// Make all guest memory resident at start.
    #[arg(long)]
    prefault: bool,
    /// Back guest memory with transparent huge pages.
    #[arg(long)]
    hugepages: bool,
    /// Run the vCPU threads under SCHED_IDLE.
    #[arg(long)]
    vcpu_sched_idle: bool,
    /// A virtio-blk disk: PATH[,ro][,bw=BYTES_PER_S][,iops=N] (bw takes units: bw=8MiB);
    /// repeatable. Opened with O_DIRECT; served by the colo-io thread.
    #[arg(long = "disk", value_parser = parse_disk)]
    disks: Vec<DiskConfig>,
    /// A virtio-console host channel (`/dev/hvc0` in a Linux guest): colo-vmm listens on this
    /// Unix socket (mode 0600) and serves one client at a time, with backpressure both ways.
    #[arg(long, value_name = "PATH")]
    channel: Option<PathBuf>,
    /// Jail the VMM before the guest runs: its own mount namespace with an empty root holding
    /// only the directories of its output files and control socket, uid UID with no
    /// capabilities, lowered rlimits, per-thread seccomp filters (needs root; see docs/vmm.md).
    #[arg(long, value_name = "UID", requires = "jail_gid")]
    jail_uid: Option<u32>,
    /// The gid of the jail (with --jail-uid).
    #[arg(long, value_name = "GID", requires = "jail_uid")]
    jail_gid: Option<u32>,
}

fn parse_disk(spec: &str) -> Result<DiskConfig, String> {
    DiskConfig::parse(spec)
}

fn parse_log_limit(s: &str) -> Result<u64, String> {
    colo_vmm::parse_log_limit(s)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line naming the cause (clap adds usage lines; --help has them).
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln_safe(&format!(
                "colo-vmm: error: {first} (see colo-vmm run --help)"
            ));
            return exit_code(EXIT_BAD_INPUT);
        }
    };
    match cli.command {
        Command::GuestPath => match colo_vmm::workload_guest_path() {
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln_safe(&format!("colo-vmm: error: {e}"));
                exit_code(EXIT_BAD_INPUT)
            }
        },
        Command::Run(a) => {
            let a = *a;
            let serial = if a.serial == "stdout" {
                SerialTarget::Stdout
            } else {
                SerialTarget::File(PathBuf::from(a.serial))
            };
            let cfg = VmConfig {
                kernel: a.kernel,
                initrd: a.initrd,
                cmdline: a.cmdline,
                vcpus: a.vcpus,
                memory_mib: a.memory_mib,
                serial,
                log: a.log,
                log_limit: a.log_limit,
                control_socket: a.control_socket,
                exit_record: a.exit_record,
                prefault: a.prefault,
                hugepages: a.hugepages,
                vcpu_sched_idle: a.vcpu_sched_idle,
                disks: a.disks,
                channel: a.channel,
                jail: a
                    .jail_uid
                    .zip(a.jail_gid)
                    .map(|(uid, gid)| JailIds { uid, gid }),
            };
            exit_code(colo_vmm::run(&cfg))
        }
    }
}

/// Writes a line to stderr, ignoring a closed stderr (the VMM's parent may be gone).
fn eprintln_safe(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
