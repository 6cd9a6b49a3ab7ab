//! `--log-limit` against a hostile guest: the workload guest prints a line for every unknown
//! word of its command line, so 2,000 words make ~80 KiB of serial output, ten times the limit.
//! The serial file and its older half stay within the limit, the dropped bytes are counted in
//! `stats` and the exit record, and the VMM's log says so.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use colo_testkit::host_lock;
use colo_vmm::{EXIT_SHUTDOWN, ExitRecord, older_half};
use common::{Vm, VmArgs, can_run};

const LIMIT: u64 = 8192;
const WORDS: usize = 2000;
/// `colo-guest: up\n`, then `colo-guest: ignoring unknown argument: x\n` per word.
const GUEST_OUTPUT: u64 = 15 + WORDS as u64 * 41;

fn size(p: &Path) -> u64 {
    fs::metadata(p).map_or(0, |m| m.len())
}

#[test]
fn a_guest_printing_ten_times_the_limit_keeps_within_it_and_the_drop_is_counted() {
    if !can_run("a_guest_printing_ten_times_the_limit", false) {
        return;
    }
    let _lock = host_lock();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("vmm.log");
    let cmdline = format!("{}hold=60", "x ".repeat(WORDS));
    let mut vm = Vm::start(VmArgs {
        cmdline: &cmdline,
        extra: vec![
            "--log-limit".into(),
            LIMIT.to_string(),
            "--log".into(),
            log.display().to_string(),
        ],
        ..Default::default()
    });
    let serial = vm.path("serial.log");
    let kept = || size(&serial) + size(&older_half(&serial));

    // The guest prints everything before it holds: wait until every byte is kept or dropped.
    let mut ctl = vm.control();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let st = ctl.stats().unwrap();
        assert!(kept() <= LIMIT, "{} bytes kept", kept());
        if kept() + st.dropped.serial == GUEST_OUTPUT {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "kept {} + dropped {} never reached {GUEST_OUTPUT}",
            kept(),
            st.dropped.serial
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stats.dropped.serial >= GUEST_OUTPUT - LIMIT, "{stats:?}");
    let newest = fs::read_to_string(&serial).unwrap();
    assert!(
        newest.ends_with("ignoring unknown argument: x\n"),
        "{newest}"
    );
    let older = fs::read_to_string(older_half(&serial)).unwrap();
    assert!(
        !format!("{older}{newest}").contains("colo-guest: up"),
        "the oldest output went first"
    );

    ctl.shutdown().unwrap();
    let status = vm.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(EXIT_SHUTDOWN));
    assert!(kept() <= LIMIT);
    let rec = ExitRecord::read(&vm.path("exit.json")).unwrap();
    assert_eq!(rec.dropped.serial, stats.dropped.serial, "{rec:?}");
    let text = fs::read_to_string(&log).unwrap();
    let line = format!(
        "output over --log-limit {LIMIT}: dropped {} bytes of serial output",
        rec.dropped.serial
    );
    assert!(text.contains(&line), "{text}");
    assert!(size(&log) + size(&older_half(&log)) <= LIMIT);
}

#[test]
fn a_limit_below_the_least_is_bad_input() {
    let out = std::process::Command::new(common::VMM)
        .args(["run", "--kernel", "/nonexistent", "--log-limit", "100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(colo_vmm::EXIT_BAD_INPUT));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--log-limit") && err.contains("4096"), "{err}");
}
