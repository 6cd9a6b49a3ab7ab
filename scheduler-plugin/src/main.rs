//! `colo-scheduler`: the scheduler plugin daemon.

fn main() {
    eprintln!(
        "colo-scheduler: stale after {} s",
        colo_scheduler::DEFAULT_STALENESS_SECS
    );
}
