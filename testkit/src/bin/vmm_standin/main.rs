//! `colo-vmm-standin`: a **test-only** stand-in for `colo-vmm run`, for hosts whose KVM cannot
//! run Linux guest user space (KVM-PVM). The agent starts it where it would start colo-vmm
//! (`offline.vmm`); it takes colo-vmm's arguments and keeps colo-vmm's contract with the agent
//! (the `started` line, the control socket, the `--channel` socket, the exit record and exit
//! statuses, `--log-limit`) but runs the guest in QEMU with TCG. It does not jail and enforces
//! no IO limits. See docs/vmm.md, "A stand-in for colo-vmm under QEMU".
//!
//! | module | what |
//! |---|---|
//! | `args` | colo-vmm's flags, what the stand-in refuses or ignores |
//! | `start` | the start: checks, sockets, QEMU, QMP, the vCPU threads |
//! | `qemu`, `qmp` | QEMU's command line and start; its JSON control protocol |
//! | `vm`, `control` | pause/resume/stats/shutdown; colo-vmm's control socket |
//! | `output` | `--serial` and `--log` within `--log-limit` |
//! | `signals`, `outcome` | SIGTERM/SIGINT; the exit status and the exit record |

mod args;
mod control;
mod outcome;
mod output;
mod qemu;
mod qmp;
mod signals;
mod start;
mod vm;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use colo_vmm::EXIT_BAD_INPUT;

use crate::args::{Cli, Command, RunArgs};
use crate::outcome::{Outcome, QemuExit};
use crate::output::Log;
use crate::vm::{Ending, Vm};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("colo-vmm-standin: error: {first} (see colo-vmm-standin run --help)");
            return exit_code(EXIT_BAD_INPUT);
        }
    };
    let Command::Run(a) = cli.command;
    let started = Instant::now();
    let (log, log_error) = match a.log.as_deref().map(|p| Log::open(p, a.log_limit)) {
        None => (Log::stderr(a.log_limit), None),
        Some(Ok(log)) => (log, None),
        Some(Err(e)) => (Log::stderr(a.log_limit), Some(e)),
    };
    let log = Arc::new(log);
    let outcome = match (signals::block(), log_error) {
        (_, Some(e)) => Outcome::bad_input(format!("--log {}: {e}", path_of(a.log.as_ref()))),
        (Err(e), None) => Outcome::vmm_error(format!("cannot block SIGTERM and SIGINT: {e}")),
        (Ok(()), None) => run(&a, &log, started),
    };
    if outcome.exit_code == EXIT_BAD_INPUT {
        log.say(&format!("error: {}", outcome.message));
    }
    outcome::record(&outcome, a.exit_record.as_deref(), &log);
    exit_code(outcome.exit_code)
}

/// Starts QEMU, serves the control socket while the guest runs, and decides the end.
fn run(a: &RunArgs, log: &Arc<Log>, started: Instant) -> Outcome {
    let ending = Arc::new(Ending::default());
    let mut vm = match start::start(a, log, &ending, started) {
        Ok(vm) => vm,
        Err(o) => return o,
    };
    let exit = wait(&mut vm.child, &vm.vm, &ending, log);
    let events = vm.vm.drain_events();
    outcome::decide(
        ending.asked(),
        exit,
        qmp::shutdown_reason(&events).as_deref(),
        &log.qemu_tail(),
    )
}

/// Waits for QEMU to end; meanwhile, with `--channel`, starts the guest once the channel's
/// first client has connected.
fn wait(child: &mut Child, vm: &Vm, ending: &Ending, log: &Log) -> QemuExit {
    loop {
        if start::exited_unreaped(child.id()) {
            break;
        }
        let held = vm.held();
        if held && ending.asked().is_none() {
            let start_now = match vm.channel_connected() {
                Ok(connected) => connected,
                Err(e) => {
                    log.say(&format!(
                        "cannot see the channel's client ({e}): the guest starts"
                    ));
                    true
                }
            };
            if start_now {
                match vm.release_hold() {
                    Ok(()) => log.say("the channel has a client: the guest starts"),
                    Err(e) => log.say(&format!("cannot start the guest: {e}")),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(if held { 20 } else { 100 }));
    }
    ending.set_qemu(None);
    match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => QemuExit::Status(code),
            (None, Some(sig)) => QemuExit::Signal(sig),
            (None, None) => QemuExit::Status(-1),
        },
        Err(e) => {
            log.say(&format!("cannot reap QEMU: {e}"));
            QemuExit::Status(-1)
        }
    }
}

fn path_of(p: Option<&std::path::PathBuf>) -> String {
    p.map(|p| p.display().to_string()).unwrap_or_default()
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
