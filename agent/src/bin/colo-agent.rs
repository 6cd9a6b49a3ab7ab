//! `colo-agent`: the node daemon. See docs/agent.md and docs/operations.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// colo's node agent: runs offline jobs in MicroVMs and protects online services.
#[derive(Debug, Parser)]
#[command(version = colo_agent::AGENT_VERSION)]
struct Args {
    /// agent.yaml.
    #[arg(
        long,
        short,
        default_value = "/etc/colo/agent.yaml",
        env = "COLO_AGENT_CONFIG"
    )]
    config: PathBuf,
    /// Log format: `text` (journald-friendly: no timestamps under systemd) or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Check agent.yaml and the policy files it names, then exit: 0 when the agent would start
    /// with them, 78 with `FILE:LINE:COL: message` lines on stderr when not. Starts nothing.
    #[arg(long)]
    check: bool,
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("COLO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, journald timestamps each line and colours make noise.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    if format == "json" {
        builder.json().init();
    } else if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// glibc gives each thread that allocates its own arena, up to eight per CPU, each keeping
/// freed memory: an agent whose threads are mostly idle needs two (about 1 MiB less resident
/// with 50 container jobs).
fn few_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes plain integers and only changes the allocator's tuning (it locks
    // the arenas itself).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        let status = colo_agent::check::run(
            &args.config,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
        return ExitCode::from(status.unwrap_or(colo_agent::check::EX_CONFIG));
    }
    init_logging(&args.log_format);
    few_malloc_arenas();
    let host = colo_agent::settings::HostFacts::detect();
    let settings = match colo_agent::settings::AgentSettings::load(&args.config, host) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(colo_agent::check::EX_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .thread_name("colo-agent")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(colo_agent::daemon::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            tracing::error!(error = %e, "invalid configuration");
            ExitCode::from(colo_agent::check::EX_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %e, "colo-agent cannot run");
            ExitCode::FAILURE
        }
    }
}
