//! The command line: the flags of `colo-vmm run` (`vmm-core/src/main.rs`), parsed with
//! colo-vmm's own parsers for `--disk` and `--log-limit`, so whatever the agent passes to
//! colo-vmm parses here the same way. What the stand-in cannot honour is refused or named in a
//! warning by [`RunArgs::check`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use colo_vmm::{DiskConfig, MAX_VCPUS, MIN_MEMORY_MIB};

/// `colo-vmm-standin run ...`.
#[derive(Debug, Parser)]
#[command(
    name = "colo-vmm-standin",
    about = "A test-only stand-in for `colo-vmm run`: runs the guest in QEMU with TCG, for hosts \
             whose KVM cannot run Linux guest user space (see docs/vmm.md)"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The one command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a kernel under QEMU (TCG) and run it to its end, as `colo-vmm run` would.
    Run(Box<RunArgs>),
}

/// The flags of `colo-vmm run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Kernel: a bzImage (QEMU's `-kernel`).
    #[arg(long)]
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (`no_timer_check` and the host's `tsc_early_khz=` are appended when
    /// missing: TCG needs them).
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    pub memory_mib: u64,
    /// Where the guest's serial console goes: `stdout` or a file path (appended to).
    #[arg(long, default_value = "stdout")]
    pub serial: String,
    /// The stand-in's own log file (appended to), with QEMU's messages; also on stderr.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Bound the serial file and the log file as colo-vmm does (`PATH.1` holds the older half).
    #[arg(long, value_name = "SIZE", value_parser = colo_vmm::parse_log_limit)]
    pub log_limit: Option<u64>,
    /// Unix socket for colo-vmm's control requests (pause, resume, stats, shutdown).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Write colo-vmm's JSON exit record to this path (atomically).
    #[arg(long)]
    pub exit_record: Option<PathBuf>,
    /// Make all guest memory resident at start (QEMU's `-mem-prealloc`).
    #[arg(long)]
    pub prefault: bool,
    /// Accepted and ignored (with a warning).
    #[arg(long)]
    pub hugepages: bool,
    /// Accepted and ignored (with a warning).
    #[arg(long)]
    pub vcpu_sched_idle: bool,
    /// A virtio-blk disk: PATH[,ro][,bw=BYTES_PER_S][,iops=N]; bw and iops are not enforced.
    #[arg(long = "disk", value_parser = DiskConfig::parse)]
    pub disks: Vec<DiskConfig>,
    /// A virtio-console host channel: QEMU listens on this Unix socket; the guest starts once
    /// the first client has connected.
    #[arg(long, value_name = "PATH")]
    pub channel: Option<PathBuf>,
    /// Refused: the stand-in does not jail QEMU.
    #[arg(long, value_name = "UID", requires = "jail_gid")]
    pub jail_uid: Option<u32>,
    /// Refused with --jail-uid.
    #[arg(long, value_name = "GID", requires = "jail_uid")]
    pub jail_gid: Option<u32>,
}

impl RunArgs {
    /// Refuses what the stand-in cannot run, in colo-vmm's words where colo-vmm refuses the
    /// same; returns warnings for what it accepts but ignores.
    pub fn check(&self) -> Result<Vec<String>, String> {
        if let Some(uid) = self.jail_uid {
            return Err(format!(
                "--jail-uid {uid}: colo-vmm-standin does not jail QEMU (it is a test-only stand-in \
                 for colo-vmm); run it without the jail (the agent's offline.jail.enabled: false)"
            ));
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(format!(
                "--vcpus {}: give 1..={MAX_VCPUS} vCPUs",
                self.vcpus
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(format!(
                "--memory-mib {}: give at least {MIN_MEMORY_MIB} MiB",
                self.memory_mib
            ));
        }
        let mut warnings = Vec::new();
        if self.hugepages {
            warnings.push("--hugepages is ignored (QEMU's guest memory is not advised)".into());
        }
        if self.vcpu_sched_idle {
            warnings
                .push("--vcpu-sched-idle is ignored (the TCG threads keep their policy)".into());
        }
        for (i, d) in self.disks.iter().enumerate() {
            if d.bw > 0 || d.iops > 0 {
                warnings.push(format!(
                    "--disk {}: bw={} iops={} are not enforced (QEMU has no colo token buckets); \
                     disk {i} runs unlimited",
                    d.path.display(),
                    d.bw,
                    d.iops
                ));
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, String> {
        let cli = Cli::try_parse_from(["colo-vmm-standin", "run"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        let Command::Run(a) = cli.command;
        Ok(*a)
    }

    #[test]
    fn the_agents_arguments_parse_as_colo_vmm_parses_them() {
        let a = parse(&[
            "--kernel",
            "/proc/self/fd/3",
            "--cmdline",
            "console=ttyS0 panic=-1",
            "--disk",
            "/proc/self/fd/4",
            "--vcpus",
            "2",
            "--memory-mib",
            "256",
            "--serial",
            "/j/serial.log",
            "--log",
            "/j/vmm.log",
            "--log-limit",
            "65536",
            "--control-socket",
            "/j/control.sock",
            "--exit-record",
            "/j/exit.json",
            "--disk",
            "/d.img,ro,bw=8MiB",
            "--channel",
            "/j/channel.sock",
        ])
        .unwrap();
        assert_eq!(a.kernel, PathBuf::from("/proc/self/fd/3"));
        assert_eq!((a.vcpus, a.memory_mib, a.log_limit), (2, 256, Some(65536)));
        assert_eq!(a.disks.len(), 2);
        assert!(a.disks[1].read_only && a.disks[1].bw == 8 << 20);
        assert_eq!(a.channel, Some(PathBuf::from("/j/channel.sock")));
        let warnings = a.check().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("not enforced"), "{warnings:?}");
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        assert!(parse(&[]).unwrap_err().contains("--kernel"));
        assert!(parse(&["--kernel", "k", "--log-limit", "10"]).is_err());
        assert!(parse(&["--kernel", "k", "--disk", ",ro"]).is_err());
        assert!(parse(&["--kernel", "k", "--jail-uid", "5"]).is_err());
        let jailed = parse(&["--kernel", "k", "--jail-uid", "5", "--jail-gid", "5"]).unwrap();
        assert!(jailed.check().unwrap_err().contains("does not jail"));
        let none = parse(&["--kernel", "k", "--vcpus", "0"]).unwrap();
        assert!(none.check().unwrap_err().contains("--vcpus 0"));
        let tiny = parse(&["--kernel", "k", "--memory-mib", "4"]).unwrap();
        assert!(tiny.check().unwrap_err().contains("--memory-mib 4"));
    }
}
