use std::io::Read;
use std::time::{Duration, Instant};

use colo_guest_agent::{Resource, Rlimit};

use super::*;

/// `/bin/sh -c script` as the calling user, from the initramfs (no root disk); the session
/// tests run their jobs from it too.
pub(crate) fn spec(script: &str) -> RunSpec {
    RunSpec {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: vec!["PATH=/usr/bin:/bin".into(), "COLO_TEST=yes".into()],
        workdir: "/".into(),
        // SAFETY: getuid and getgid cannot fail.
        uid: unsafe { libc::getuid() },
        // SAFETY: as above.
        gid: unsafe { libc::getgid() },
        rlimits: vec![],
        hostname: "test".into(),
        root: None,
    }
}

fn read_nonblocking(r: &mut Option<impl Read>, into: &mut Vec<u8>) {
    let Some(p) = r else { return };
    let mut buf = [0u8; 4096];
    match p.read(&mut buf) {
        Ok(0) => *r = None,
        Ok(n) => into.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("read: {e}"),
    }
}

/// Runs the job to its end: (stdout, stderr, status).
fn run(spec: &RunSpec) -> (String, String, ExitStatus) {
    let mut job = Job::spawn(spec).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while job.stdout.is_some() || job.stderr.is_some() || job.status().is_none() {
        assert!(Instant::now() < deadline, "job did not finish");
        read_nonblocking(&mut job.stdout, &mut out);
        read_nonblocking(&mut job.stderr, &mut err);
        job.reap(Reaper::Own).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = job.status().unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        status,
    )
}

#[test]
fn output_of_both_streams_and_the_exit_code_come_back() {
    let (out, err, status) = run(&spec("echo out; echo err >&2; exit 3"));
    assert_eq!(
        (out.as_str(), err.as_str(), status),
        ("out\n", "err\n", ExitStatus::Code(3))
    );
}

#[test]
fn the_environment_is_the_specs_alone_and_the_workdir_is_set() {
    // SAFETY: setting a variable in the test process before spawning; no other test reads it.
    unsafe { std::env::set_var("COLO_LEAK", "1") };
    let s = RunSpec {
        workdir: "/tmp".into(),
        ..spec("echo ${COLO_LEAK:-none} $COLO_TEST; pwd")
    };
    let (out, _, status) = run(&s);
    assert_eq!(
        (out.as_str(), status),
        ("none yes\n/tmp\n", ExitStatus::Code(0))
    );
}

#[test]
fn resource_limits_reach_the_job() {
    let s = RunSpec {
        rlimits: vec![Rlimit {
            resource: Resource::Nofile,
            soft: 77,
            hard: 99,
        }],
        ..spec("ulimit -Sn; ulimit -Hn")
    };
    let (out, _, _) = run(&s);
    assert_eq!(out, "77\n99\n");
}

#[test]
fn the_job_runs_as_the_specs_uid_and_gid() {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("\n*** SKIPPED the_job_runs_as_the_specs_uid_and_gid: needs root ***\n");
        return;
    }
    let s = RunSpec {
        uid: 65534,
        gid: 65533,
        ..spec("id -u; id -g; id -G")
    };
    let (out, err, status) = run(&s);
    assert_eq!(
        (out.as_str(), status),
        ("65534\n65533\n65533\n", ExitStatus::Code(0)),
        "{err}"
    );
}

#[test]
fn a_signal_reaches_the_whole_process_group() {
    // The shell's child (sleep) must die too, or the pipes would stay open for 60 s.
    let mut job = Job::spawn(&spec("sleep 60; echo survived")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    job.signal(15).unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    while job.stdout.is_some() || job.status().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the group survived SIGTERM"
        );
        read_nonblocking(&mut job.stdout, &mut out);
        job.reap(Reaper::Own).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(job.status(), Some(ExitStatus::Signal(15)));
    assert!(out.is_empty());
    // Signalling a group that is gone is fine.
    job.signal(9).unwrap();
}

#[test]
fn the_pidfd_becomes_readable_when_the_job_exits() {
    let mut job = Job::spawn(&spec("exec sleep 0.3")).unwrap();
    let poll = |fd: &OwnedFd, ms| {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        unsafe { libc::poll(&mut p, 1, ms) }
    };
    assert_eq!(poll(&job.pidfd, 0), 0, "readable before the job ended");
    assert_eq!(
        poll(&job.pidfd, 10_000),
        1,
        "not readable after the job ended"
    );
    job.reap(Reaper::Own).unwrap();
    assert_eq!(job.status(), Some(ExitStatus::Code(0)));
}

#[test]
fn a_missing_command_is_a_spawn_error() {
    let s = RunSpec {
        path: "/nonexistent/colo-test".into(),
        ..spec("")
    };
    let err = Job::spawn(&s).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot start /nonexistent/colo-test: "),
        "{err}"
    );
}
