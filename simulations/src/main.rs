//! `colo-sim`: replays a cluster trace through colo's policy.

fn main() {
    eprintln!("colo-sim: step {} s", colo_sim::DEFAULT_STEP_SECS);
}
