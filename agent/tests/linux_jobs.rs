//! Programs in Linux guests, end to end: coloctl and a gRPC client → a real colo-agent → its
//! VMM → the guest's channel → colo's in-guest agent → the program → the job's outcome.
//!
//! This host's KVM (KVM-PVM) cannot run a Linux guest's user space, so the VMM here is a
//! **stand-in**: `colo-vmm-standin` (colo-testkit) honours colo-vmm's contract with the agent
//! (its command line, `started` line, control socket and exit record) and runs the same guest
//! kernel, guest image, in-guest agent and channel type (virtio-console) under QEMU with TCG.
//! `scripts/guest-e2e.sh` builds the guest image and the stand-in and runs these tests with
//! `COLO_GUEST_E2E_KERNEL`, `COLO_GUEST_E2E_INITRAMFS` and `COLO_VMM_STANDIN` set; without
//! them the end-to-end tests say SKIPPED. The refusal on a KVM-PVM host needs no guest.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use common::{Options, TestAgent, coloctl, reason, rt, state, submit, text, wait_end, wait_for};

/// What the end-to-end tests need, or `None` (they skip, loudly).
struct Guest {
    kernel: PathBuf,
    initramfs: PathBuf,
    standin: PathBuf,
    cmdline: String,
}

fn guest(test: &str) -> Option<(Guest, colo_testkit::HostLock)> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let (Some(kernel), Some(initramfs), Some(standin)) = (
        var("COLO_GUEST_E2E_KERNEL"),
        var("COLO_GUEST_E2E_INITRAMFS"),
        var("COLO_VMM_STANDIN"),
    ) else {
        eprintln!(
            "*** SKIPPED {test}: no guest kernel, image and VMM stand-in \
             (scripts/guest-e2e.sh builds them and runs this test) ***"
        );
        return None;
    };
    let cmdline =
        std::env::var("COLO_GUEST_E2E_CMDLINE").unwrap_or_else(|_| "console=ttyS0 panic=-1".into());
    let lock = common::root_guard(test)?;
    Some((
        Guest {
            kernel,
            initramfs,
            standin,
            cmdline,
        },
        lock,
    ))
}

/// An agent whose VMM is the stand-in, running Linux-guest programs.
fn agent(g: &Guest) -> TestAgent {
    let extra_offline = format!(
        "  jail:\n    enabled: false\n  linux:\n    kernel: {}\n    initramfs: {}\n    cmdline: \"{}\"\n    user_space: assume\n",
        g.kernel.display(),
        g.initramfs.display(),
        g.cmdline
    );
    TestAgent::start(Options {
        vmm: Some(g.standin.clone()),
        // QEMU emulating the guest needs far more beside guest memory than colo-vmm does.
        memory_overhead: "1GiB",
        budget_memory: "8GiB",
        extra_offline,
        env: vec![("COLO_TEST_START_TIMEOUT".into(), "60s".into())],
        ..Default::default()
    })
}

/// What every end-to-end test starts from: the host lock, an agent whose VMM is the stand-in,
/// and a busybox image beneath its image roots; `None` when the test skips.
fn setup(test: &str) -> Option<(colo_testkit::HostLock, TestAgent, String)> {
    let (g, lock) = guest(test)?;
    let agent = agent(&g);
    let image = busybox_image(&agent, "bb");
    Some((lock, agent, image))
}

/// Waits until the job's output holds `needle` (the guest is up and the program runs).
async fn wait_for_output(agent: &TestAgent, id: &str, needle: &str) {
    let deadline = Instant::now() + BOOT_AND_RUN;
    while !logs(agent, id).contains(needle) {
        assert!(Instant::now() < deadline, "{}", serial_tail(agent, id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A root directory image with busybox (every applet a link to it).
fn busybox_image(agent: &TestAgent, name: &str) -> String {
    let root = agent.images_dir().join(name);
    for d in ["bin", "dev", "proc", "sys", "tmp", "data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("busybox-static is installed (scripts/install-deps.sh)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in [
        "sh",
        "echo",
        "sort",
        "sha256sum",
        "sleep",
        "dd",
        "cat",
        "head",
        "seq",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    root.display().to_string()
}

fn program_job(key: &str, image: &str, script: &str, memory_mib: u64) -> pb::JobSpec {
    pb::JobSpec {
        idempotency_key: key.into(),
        sandbox: Some(pb::job_spec::Sandbox::Linux(pb::LinuxGuest {
            program: Some(pb::ContainerJob {
                image: image.into(),
                command: "sh".into(),
                args: vec!["-c".into(), script.into()],
                env: [("LC_ALL".to_string(), "C".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        vcpus: 1,
        memory_mib,
        ..Default::default()
    }
}

/// The job's output as `coloctl logs` prints it.
fn logs(agent: &TestAgent, id: &str) -> String {
    let o = coloctl(agent, &["logs", id]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn serial_tail(agent: &TestAgent, id: &str) -> String {
    let o = coloctl(agent, &["logs", "--vmm", id]);
    let t = text(&o);
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

const BOOT_AND_RUN: Duration = Duration::from_secs(240);

#[test]
fn a_program_prints_and_its_exit_code_is_the_outcome() {
    let Some((_lock, agent, image)) = setup("a_program_prints_and_its_exit_code_is_the_outcome")
    else {
        return;
    };
    rt().block_on(async {
        let mut c = agent.client().await;
        let t0 = Instant::now();
        let j = submit(
            &mut c,
            program_job("hi", &image, "echo hi; echo oops >&2; exit 7", 256),
        )
        .await;
        let end = wait_end(&mut c, &j.id, BOOT_AND_RUN).await;
        eprintln!(
            "linux-e2e: exit 7 job ended after {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(
            (state(&end), reason(&end), end.exit_code),
            (
                pb::JobState::Failed,
                pb::EndReason::GuestExitNonzero,
                Some(7)
            ),
            "{end:?}\n{}",
            serial_tail(&agent, &j.id)
        );
        assert_eq!(logs(&agent, &j.id), "hi\noops\n");
        // Exit 0 succeeds; submitted the way a user does, with coloctl.
        let o = coloctl(
            &agent,
            &[
                "submit",
                "--sandbox",
                "linux",
                "--image",
                &image,
                "--memory-mib",
                "256",
                "--wait",
                "--",
                "sh",
                "-c",
                "echo fine",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        let out = text(&o);
        let id = out
            .split_whitespace()
            .skip_while(|w| *w != "job")
            .nth(1)
            .unwrap_or_else(|| panic!("no job id in {out}"))
            .to_string();
        assert!(out.contains("succeeded"), "{out}");
        let end = wait_end(&mut c, &id, BOOT_AND_RUN).await;
        assert_eq!(
            (state(&end), end.exit_code),
            (pb::JobState::Succeeded, Some(0)),
            "{end:?}"
        );
        assert_eq!(logs(&agent, &id), "fine\n");
    });
}

/// 200 MiB of 1 KiB lines, pseudo-random, as a raw disk; its sorted SHA-256.
fn sort_input(path: &Path) -> String {
    use sha2::Digest;
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(204_800);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..204_800 {
        let mut l = Vec::with_capacity(1024);
        while l.len() < 1023 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            l.push(b'a' + (x % 26) as u8);
        }
        l.push(b'\n');
        lines.push(l);
    }
    let mut f = std::fs::File::create(path).unwrap();
    for l in &lines {
        f.write_all(l).unwrap();
    }
    lines.sort();
    let mut h = sha2::Sha256::new();
    for l in &lines {
        h.update(l);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_200_mib_sort_checksums_as_on_the_host() {
    let Some((_lock, agent, image)) = setup("a_200_mib_sort_checksums_as_on_the_host") else {
        return;
    };
    let input = agent.volumes_dir().join("input.txt");
    let want = sort_input(&input);
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut spec = program_job("sort", &image, "sort /dev/vdb | sha256sum", 1024);
        spec.disks.push(pb::Disk {
            path: input.display().to_string(),
            read_only: true,
            ..Default::default()
        });
        let t0 = Instant::now();
        let j = submit(&mut c, spec).await;
        let end = wait_end(&mut c, &j.id, Duration::from_secs(420)).await;
        eprintln!(
            "linux-e2e: 200 MiB sort ended after {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(
            (state(&end), end.exit_code),
            (pb::JobState::Succeeded, Some(0)),
            "{end:?}\n{}",
            serial_tail(&agent, &j.id)
        );
        assert_eq!(logs(&agent, &j.id), format!("{want}  -\n"));
    });
}

#[test]
fn a_read_only_volume_is_seen_in_the_guest_and_never_written() {
    let Some((_lock, agent, image)) =
        setup("a_read_only_volume_is_seen_in_the_guest_and_never_written")
    else {
        return;
    };
    let vol = agent.volumes_dir().join("in");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("hello.txt"), "hi from the host\n").unwrap();
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut spec = program_job(
            "volume",
            &image,
            "cat /in/hello.txt; (echo x > /in/new) 2>/dev/null && echo wrote || echo read-only; \
             echo y > /tmp/scratch && echo root-writable; ulimit -n",
            256,
        );
        if let Some(pb::job_spec::Sandbox::Linux(l)) = spec.sandbox.as_mut()
            && let Some(p) = l.program.as_mut()
        {
            p.volumes.push(pb::VolumeMount {
                source: vol.display().to_string(),
                target: "/in".into(),
                read_only: true,
            });
        }
        let j = submit(&mut c, spec).await;
        let end = wait_end(&mut c, &j.id, BOOT_AND_RUN).await;
        assert_eq!(
            (state(&end), end.exit_code),
            (pb::JobState::Succeeded, Some(0)),
            "{end:?}\n{}",
            serial_tail(&agent, &j.id)
        );
        assert_eq!(
            logs(&agent, &j.id),
            "hi from the host\nread-only\nroot-writable\n1024\n"
        );
    });
    assert!(!vol.join("new").exists(), "the host directory is untouched");
}

#[test]
fn a_cancelled_program_ends_cancelled() {
    let Some((_lock, agent, image)) = setup("a_cancelled_program_ends_cancelled") else {
        return;
    };
    rt().block_on(async {
        let mut c = agent.client().await;
        let j = submit(
            &mut c,
            program_job("long", &image, "echo up; sleep 600", 256),
        )
        .await;
        wait_for_output(&agent, &j.id, "up").await;
        let t0 = Instant::now();
        let o = coloctl(&agent, &["cancel", &j.id]);
        assert!(o.status.success(), "{}", text(&o));
        let end = wait_end(&mut c, &j.id, Duration::from_secs(60)).await;
        eprintln!("linux-e2e: cancel took {:.1} s", t0.elapsed().as_secs_f64());
        assert_eq!(state(&end), pb::JobState::Cancelled, "{end:?}");
        assert!(end.message.contains("signal 15"), "{end:?}");
    });
}

#[test]
fn a_program_outgrowing_its_guest_memory_fails_with_the_cause() {
    let Some((_lock, agent, image)) =
        setup("a_program_outgrowing_its_guest_memory_fails_with_the_cause")
    else {
        return;
    };
    rt().block_on(async {
        let mut c = agent.client().await;
        // One buffer of 99% of the guest's MemTotal, filled, in a 192 MiB guest: the kernel
        // grants it (its overcommit guess refuses only a request beyond MemTotal) but cannot
        // hold it beside itself, so the guest's OOM killer ends the program. Sized from
        // MemTotal because what the kernel keeps differs by kernel (measured: Debian's cloud
        // kernel held 100 MiB and not 130, colo's held 140).
        let j = submit(
            &mut c,
            program_job(
                "oom",
                &image,
                "read -r _ kb _ </proc/meminfo; \
                 exec dd if=/dev/zero of=/dev/null bs=$((kb * 99 / 100))k count=1",
                192,
            ),
        )
        .await;
        let end = wait_end(&mut c, &j.id, BOOT_AND_RUN).await;
        assert_eq!(
            (state(&end), reason(&end), end.exit_code),
            (
                pb::JobState::Failed,
                pb::EndReason::GuestExitNonzero,
                Some(137)
            ),
            "{end:?}\n{}",
            serial_tail(&agent, &j.id)
        );
        assert!(end.message.contains("OOM killer"), "{end:?}");
        let console = text(&coloctl(&agent, &["logs", "--vmm", &j.id]));
        assert!(
            console.contains("Out of memory: Killed process") && console.contains("(dd)"),
            "{console}"
        );
    });
}

#[test]
fn a_program_survives_a_kill_9_of_the_agent() {
    let Some((_lock, mut agent, image)) = setup("a_program_survives_a_kill_9_of_the_agent") else {
        return;
    };
    let id = rt().block_on(async {
        let mut c = agent.client().await;
        let j = submit(
            &mut c,
            program_job(
                "restart",
                &image,
                "for i in $(seq 1 60); do echo line $i; sleep 0.2; done; exit 3",
                256,
            ),
        )
        .await;
        wait_for_output(&agent, &j.id, "line 3\n").await;
        j.id
    });
    agent.kill9();
    std::thread::sleep(Duration::from_secs(4));
    agent.spawn();
    agent.wait_serving();
    rt().block_on(async {
        let mut c = agent.client().await;
        wait_for(&mut c, &id, Duration::from_secs(30), |j| {
            state(j) != pb::JobState::Pending
        })
        .await;
        let end = wait_end(&mut c, &id, BOOT_AND_RUN).await;
        assert_eq!(
            (state(&end), end.exit_code),
            (pb::JobState::Failed, Some(3)),
            "{end:?}\n{}",
            serial_tail(&agent, &id)
        );
        let want: String = (1..=60).map(|i| format!("line {i}\n")).collect();
        assert_eq!(logs(&agent, &id), want, "every line once, in order");
    });
}

#[test]
fn a_kvm_pvm_host_refuses_programs_at_submit() {
    let Some(_lock) = common::root_guard("a_kvm_pvm_host_refuses_programs_at_submit") else {
        return;
    };
    // The agent's own defaults: it finds out whether guest user space can run here.
    let agent = TestAgent::start(Options::default());
    let image = busybox_image(&agent, "bb");
    let pvm = Path::new("/sys/module/kvm_pvm").exists()
        && !std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .split_whitespace()
            .any(|f| f == "vmx" || f == "svm");
    rt().block_on(async {
        let mut c = agent.client().await;
        let t0 = Instant::now();
        let e = c
            .submit_job(pb::SubmitJobRequest {
                spec: Some(program_job("refused", &image, "true", 256)),
            })
            .await
            .expect_err("refused");
        assert!(t0.elapsed() < Duration::from_secs(5), "refused at once");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        let m = e.message();
        assert!(
            m.contains("cannot run linux (a program in a Linux guest) jobs"),
            "{m}"
        );
        if pvm {
            assert!(m.contains("KVM-PVM") && m.contains("user space"), "{m}");
        } else {
            eprintln!("not a KVM-PVM host: refused for another cause: {m}");
        }
        // The node says so too.
        let o = coloctl(&agent, &["node"]);
        if pvm {
            assert!(text(&o).contains("KVM-PVM"), "{}", text(&o));
        }
    });
}
