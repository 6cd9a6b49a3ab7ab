//! `colo-agent`: the node daemon.

fn main() {
    eprintln!("colo-agent {}", colo_agent::AGENT_VERSION);
}
