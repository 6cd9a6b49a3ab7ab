//! `coloctl`: the command-line client of colo.

fn main() {
    eprintln!("coloctl {}", colo_agent::AGENT_VERSION);
}
