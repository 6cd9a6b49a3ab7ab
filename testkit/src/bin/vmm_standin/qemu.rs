//! QEMU's command line for a `colo-vmm run`, and QEMU's start.
//!
//! The machine is `microvm` with the PIT, PIC and RTC, under TCG, with or without ACPI
//! ([`Acpi`]): colo's own kernel (a PVH `vmlinux` without ACPI) takes its virtio-mmio devices
//! from the command line, which microvm writes itself without ACPI (`auto-kernel-cmdline`), as
//! colo-vmm does; Debian's cloud kernel finds them only in ACPI. QEMU starts stopped (`-S`) so
//! the stand-in can name the vCPU threads and, with `--channel`, hold the guest until the host
//! side has connected. The serial console goes to QEMU's stdout (a pipe the stand-in copies
//! into `--serial` within `--log-limit`), QEMU's messages to its stderr (copied into `--log`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::args::RunArgs;

/// The QEMU binary: `$COLO_VMM_STANDIN_QEMU`, or `qemu-system-x86_64` on `PATH`.
pub fn binary() -> OsString {
    std::env::var_os("COLO_VMM_STANDIN_QEMU").unwrap_or_else(|| "qemu-system-x86_64".into())
}

/// The chardev id of the `--channel` socket (for `query-chardev`).
pub const CHANNEL_CHARDEV: &str = "channel";

/// The `-drive` id of disk `index` (for `query-blockstats`).
pub fn drive_id(index: usize) -> String {
    format!("disk{index}")
}

/// Whether the machine has ACPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acpi {
    /// ACPI tables describe the devices; the guest powers off through ACPI.
    On,
    /// No ACPI (as under colo-vmm): the devices are on the kernel command line and the guest
    /// ends with a restart.
    Off,
}

/// The variable that overrides [`Acpi::for_kernel`]'s choice: `on` or `off`.
pub const ACPI_VAR: &str = "COLO_VMM_STANDIN_ACPI";

impl Acpi {
    /// `$COLO_VMM_STANDIN_ACPI` (`on` or `off`), else by the kernel's format: an ELF
    /// `vmlinux` (colo's kernel, booted through its PVH entry and built without ACPI) gets none,
    /// anything else (a bzImage such as Debian's cloud kernel) gets ACPI.
    pub fn for_kernel(kernel: &Path) -> Result<Self, String> {
        Self::choose(std::env::var_os(ACPI_VAR).as_deref(), kernel)
    }

    fn choose(setting: Option<&OsStr>, kernel: &Path) -> Result<Self, String> {
        if let Some(v) = setting {
            return match v.to_str() {
                Some("on") => Ok(Self::On),
                Some("off") => Ok(Self::Off),
                _ => Err(format!(
                    "{ACPI_VAR}={}: expected on or off (unset: off for an ELF vmlinux)",
                    v.to_string_lossy()
                )),
            };
        }
        let mut magic = [0u8; 4];
        std::fs::File::open(kernel)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .map_err(|e| format!("--kernel {}: {e}", kernel.display()))?;
        Ok(if magic == *b"\x7fELF" {
            Self::Off
        } else {
            Self::On
        })
    }
}

/// QEMU's arguments for `a`, with its QMP socket at `qmp`, the host's TSC rate (kHz) and
/// `acpi`.
pub fn command_line(a: &RunArgs, qmp: &Path, tsc_khz: Option<u64>, acpi: Acpi) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::new();
    let mut push = |words: &[&OsStr]| v.extend(words.iter().map(|w| w.to_os_string()));
    let s = |t: &'static str| OsStr::new(t);
    push(&[s("-name"), s("colo-vmm-standin,debug-threads=on")]);
    push(&[s("-accel"), s("tcg")]);
    push(&[
        s("-M"),
        match acpi {
            Acpi::On => s("microvm,acpi=on,pit=on,pic=on,rtc=on"),
            Acpi::Off => s("microvm,acpi=off,pit=on,pic=on,rtc=on,auto-kernel-cmdline=on"),
        },
    ]);
    push(&[
        s("-nodefaults"),
        s("-no-user-config"),
        s("-display"),
        s("none"),
    ]);
    push(&[s("-no-reboot"), s("-S")]);
    let memory = OsString::from(a.memory_mib.to_string());
    let vcpus = OsString::from(a.vcpus.to_string());
    push(&[s("-m"), &memory, s("-smp"), &vcpus]);
    if a.prefault {
        push(&[s("-mem-prealloc")]);
    }
    push(&[s("-kernel"), a.kernel.as_os_str()]);
    if let Some(initrd) = &a.initrd {
        push(&[s("-initrd"), initrd.as_os_str()]);
    }
    let append = OsString::from(tcg_cmdline(&a.cmdline, tsc_khz, acpi));
    push(&[s("-append"), &append]);
    push(&[s("-chardev"), s("stdio,id=serial,signal=off")]);
    push(&[s("-serial"), s("chardev:serial")]);
    // Disks first: each takes the next virtio-mmio transport, so the first is the guest's vda.
    for (i, d) in a.disks.iter().enumerate() {
        let mut drive = OsString::from("file=");
        drive.push(opt_value(&d.path));
        drive.push(format!(",if=none,id={},format=raw", drive_id(i)));
        if d.read_only {
            drive.push(",readonly=on");
        }
        let device = OsString::from(format!("virtio-blk-device,drive={}", drive_id(i)));
        push(&[s("-drive"), &drive, s("-device"), &device]);
    }
    if let Some(channel) = &a.channel {
        let mut chardev = OsString::from(format!("socket,id={CHANNEL_CHARDEV},path="));
        chardev.push(opt_value(channel));
        chardev.push(",server=on,wait=off");
        let console = OsString::from(format!("virtconsole,chardev={CHANNEL_CHARDEV}"));
        push(&[s("-chardev"), &chardev]);
        push(&[
            s("-device"),
            s("virtio-serial-device"),
            s("-device"),
            &console,
        ]);
    }
    let mut monitor = OsString::from("socket,id=qmp,path=");
    monitor.push(opt_value(qmp));
    monitor.push(",server=on,wait=off");
    push(&[
        s("-chardev"),
        &monitor,
        s("-mon"),
        s("chardev=qmp,mode=control"),
    ]);
    v
}

/// The kernel command line with what a Linux guest needs under TCG: the host's TSC rate
/// (`tsc_early_khz=`; TCG's TSC is the host's, and microvm has no HPET or ACPI PM timer to
/// calibrate against, which stalled boots) and `no_timer_check`; without ACPI also `reboot=t`
/// (the guest ends with a restart; microvm has no i8042, on which the kernel's default restart
/// spent ~5 s: this goes straight to a triple fault, QEMU's `guest-reset`). Words already there
/// stay.
pub fn tcg_cmdline(cmdline: &str, tsc_khz: Option<u64>, acpi: Acpi) -> String {
    let mut out = cmdline.trim().to_string();
    let mut add = |word: String, key: &str| {
        if !cmdline
            .split_whitespace()
            .any(|w| w.split('=').next() == Some(key))
        {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&word);
        }
    };
    add("no_timer_check".into(), "no_timer_check");
    if let Some(khz) = tsc_khz {
        add(format!("tsc_early_khz={khz}"), "tsc_early_khz");
    }
    if acpi == Acpi::Off {
        add("reboot=t".into(), "reboot");
    }
    out
}

/// The host's TSC rate in kHz, from the first `cpu MHz` of `/proc/cpuinfo`.
pub fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_mhz(&text)
}

fn parse_cpu_mhz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    let khz = (mhz * 1000.0).round();
    (khz >= 1.0 && khz < u64::MAX as f64).then_some(khz as u64)
}

/// A value inside a QEMU option list: commas doubled (`a,b` → `a,,b`).
pub fn opt_value(path: &Path) -> OsString {
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// Starts QEMU with `args`: stdin from /dev/null, stdout and stderr piped, files it creates
/// (its sockets) private to the user, and killed when this process dies.
pub fn spawn(args: &[OsString]) -> std::io::Result<Child> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid, umask, sigemptyset, sigaddset,
    // pthread_sigmask) on local data; it allocates nothing (its error is a raw OS error).
    unsafe {
        cmd.pre_exec(move || {
            // QEMU must not outlive the stand-in (SIGKILL included): the kernel kills it when
            // the thread that forked it (the main thread, which lives to the end) exits.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the prctl took effect: no signal will come.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            libc::umask(0o077);
            // The stand-in blocks these for its signal thread; QEMU handles them itself.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let cli = crate::args::Cli::try_parse_from(
            ["colo-vmm-standin", "run", "--kernel", "/k"]
                .iter()
                .chain(extra),
        )
        .unwrap();
        let crate::args::Command::Run(a) = cli.command;
        *a
    }

    fn joined(v: &[OsString]) -> String {
        v.iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn disks_channel_and_sizes_reach_qemu_in_order() {
        let a = args(&[
            "--vcpus",
            "2",
            "--memory-mib",
            "256",
            "--cmdline",
            "console=ttyS0",
            "--disk",
            "/root.img,ro",
            "--disk",
            "/data.img",
            "--channel",
            "/j/c,h.sock",
            "--initrd",
            "/i",
        ]);
        let line = joined(&command_line(
            &a,
            Path::new("/q/qmp.sock"),
            Some(2_000_000),
            Acpi::On,
        ));
        assert!(line.contains("-accel tcg -M microvm,acpi=on"), "{line}");
        assert!(
            line.contains("-m 256 -smp 2 -kernel /k -initrd /i"),
            "{line}"
        );
        assert!(
            line.contains("-append console=ttyS0 no_timer_check tsc_early_khz=2000000"),
            "{line}"
        );
        let vda = line.find("file=/root.img,if=none,id=disk0,format=raw,readonly=on");
        let vdb = line.find("file=/data.img,if=none,id=disk1,format=raw -device");
        assert!(vda.is_some() && vdb.is_some() && vda < vdb, "{line}");
        assert!(
            line.contains("socket,id=channel,path=/j/c,,h.sock,server=on,wait=off"),
            "{line}"
        );
        assert!(
            line.contains("-device virtconsole,chardev=channel"),
            "{line}"
        );
        assert!(line.contains("path=/q/qmp.sock,server=on,wait=off -mon chardev=qmp"));
        assert!(line.contains("-no-reboot -S"), "{line}");
    }

    #[test]
    fn without_acpi_microvm_names_the_devices_and_the_guest_restarts_at_once() {
        let a = args(&["--cmdline", "console=ttyS0", "--disk", "/root.img"]);
        let line = joined(&command_line(&a, Path::new("/q"), None, Acpi::Off));
        assert!(
            line.contains("-M microvm,acpi=off,pit=on,pic=on,rtc=on,auto-kernel-cmdline=on"),
            "{line}"
        );
        assert!(
            line.contains("-append console=ttyS0 no_timer_check reboot=t -chardev"),
            "{line}"
        );
        assert_eq!(
            tcg_cmdline("reboot=k", None, Acpi::Off),
            "reboot=k no_timer_check"
        );
    }

    #[test]
    fn an_elf_kernel_runs_without_acpi_unless_told() {
        let dir = std::env::temp_dir().join(format!("colo-standin-acpi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (elf, bz) = (dir.join("vmlinux"), dir.join("bzImage"));
        std::fs::write(&elf, b"\x7fELF\x02\x01").unwrap();
        std::fs::write(&bz, [0x4d_u8, 0x5a, 0, 0, 0]).unwrap();
        assert_eq!(Acpi::choose(None, &elf), Ok(Acpi::Off));
        assert_eq!(Acpi::choose(None, &bz), Ok(Acpi::On));
        assert_eq!(Acpi::choose(Some(OsStr::new("on")), &elf), Ok(Acpi::On));
        assert_eq!(Acpi::choose(Some(OsStr::new("off")), &bz), Ok(Acpi::Off));
        let bad = Acpi::choose(Some(OsStr::new("yes")), &elf).unwrap_err();
        assert!(bad.contains("COLO_VMM_STANDIN_ACPI=yes"), "{bad}");
        let missing = Acpi::choose(None, &dir.join("none")).unwrap_err();
        assert!(missing.contains("--kernel"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_caller_s_timer_words_are_kept() {
        assert_eq!(
            tcg_cmdline("a tsc_early_khz=5 no_timer_check", Some(9), Acpi::On),
            "a tsc_early_khz=5 no_timer_check"
        );
        assert_eq!(tcg_cmdline("", None, Acpi::On), "no_timer_check");
        assert_eq!(
            parse_cpu_mhz("processor\t: 0\ncpu MHz\t\t: 2399.998\n"),
            Some(2_399_998)
        );
        assert_eq!(parse_cpu_mhz("cpu MHz : x"), None);
    }
}
