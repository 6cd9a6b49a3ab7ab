//! Helpers shared by the agent's benchmarks (`agent_bench`, `container_bench`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use colo_proto::agent::agent_client::AgentClient;
use tonic::transport::Channel;

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub async fn connect(socket: &Path) -> AgentClient<Channel> {
    let path = socket.to_path_buf();
    let ch = tonic::transport::Endpoint::from_static("http://agent.bench")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .expect("connect");
    AgentClient::new(ch)
}

pub async fn wait_state(
    c: &mut AgentClient<Channel>,
    id: &str,
    done: impl Fn(pb::JobState) -> bool,
) -> pb::Job {
    let mut s = c
        .watch_job(pb::WatchJobRequest {
            id: id.into(),
            serial: false,
        })
        .await
        .expect("watch")
        .into_inner();
    while let Some(ev) = s.message().await.expect("stream") {
        if let Some(pb::job_event::Event::State(j)) = ev.event
            && done(pb::JobState::try_from(j.state).unwrap_or_default())
        {
            return j;
        }
    }
    panic!("watch of {id} ended early");
}

/// CPU time of all live threads of `pid`, ns (first field of each thread's schedstat).
pub fn thread_cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Starts the release colo-agent `bin` with `config`, its output (warnings) in `log`.
pub fn spawn_agent(bin: &Path, config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(bin)
        .arg("--config")
        .arg(config)
        .env("COLO_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start colo-agent")
}

/// Waits until the agent's socket exists (20 s at most), then connects.
pub async fn connect_when_up(socket: &Path) -> AgentClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "agent did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    connect(socket).await
}
