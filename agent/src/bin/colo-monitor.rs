//! `colo-monitor`: the per-job container monitor (see `colo_agent::jobs::runtime::container::monitor`).

use colo_agent::jobs::runtime::container::monitor::{MonitorArgs, run};

fn main() {
    let args = match MonitorArgs::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("colo-monitor: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(run(&args));
}
