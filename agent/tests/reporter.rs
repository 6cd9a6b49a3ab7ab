//! The reporter against the real colo-scheduler over real TCP sockets: 1,000 agents streaming
//! with no report lost, a QoS loop that keeps running while the scheduler is down, a restarted
//! scheduler that learns the node at once, and mutual TLS where only the node the agent's
//! certificate names gets through.

use std::time::{Duration, Instant};

use colo_agent::qos::report::{NodeInputs, node_report};
use colo_agent::serve::reporter::{Reporter, ReporterConfig};
use colo_policy::scoring::{Admission, InterferenceSignals, Resources, ScoringParams};
use colo_scheduler::{Running, SchedulerConfig};
use tokio::net::TcpListener;

const GIB: u64 = 1 << 30;

fn inputs(name: &str, psi: f64) -> NodeInputs {
    NodeInputs {
        node_name: name.into(),
        capacity: Resources::new(16_000, 64 * GIB),
        online_usage: Resources::new(4_000, 16 * GIB),
        offline_usage: Resources::new(1_000, 4 * GIB),
        signals: InterferenceSignals {
            psi_ms_per_s: psi,
            ..InterferenceSignals::default()
        },
        ..NodeInputs::default()
    }
}

async fn scheduler_on(listener: TcpListener) -> Running {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    colo_scheduler::start(SchedulerConfig::default(), listener, http).unwrap()
}

/// Binds `port` again for a scheduler that comes back on it. The port can be held for a moment
/// after the old listener let go of it: by a socket still closing, or by one of the reporter's
/// own connection attempts to which the kernel gave this very port as its source (a TCP
/// self-connect: the port came from the ephemeral range). Such holders are gone within
/// milliseconds, so the bind is retried for up to 10 s.
async fn rebind(port: u16) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind 127.0.0.1:{port} again: {e}"),
        }
    }
}

async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_agents_lose_no_report() {
    let _lock = colo_testkit::host_lock();
    // Two sockets per agent live in this process (client and server side): lift the soft limit
    // on open files, which is 1,024 on many systems, towards the hard one.
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    if soft < 4_096 {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(4_096),
            hard,
        )
        .expect("setrlimit");
    }
    assert!(
        hard >= 2_200,
        "this test needs about 2,100 open files; raise the hard limit (ulimit -Hn) above {hard}"
    );
    let s = scheduler_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let endpoint = format!("http://{}", s.grpc_addr);
    let params = ScoringParams::default();
    let mut agents = Vec::new();
    let t_start = Instant::now();
    for i in 0..1_000 {
        let mut c = ReporterConfig::new(endpoint.clone());
        c.interval = Duration::from_millis(500);
        c.backoff_initial = Duration::from_millis(100);
        c.backoff_max = Duration::from_secs(1);
        let r = Reporter::spawn(c).unwrap();
        let name = format!("node-{i:04}");
        r.handle()
            .publish(node_report(&inputs(&name, 0.0), &params, Admission::Accepting).0);
        agents.push((name, r));
    }
    // Each agent reports every 500 ms; also push a significant change through half of them.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // For each hot agent, a count of reports after which one certainly carries the change: the
    // count read after publishing, plus two (a report being made while we publish may still
    // carry the old snapshot; the one after it cannot).
    let mut hot = Vec::new();
    for (i, (name, r)) in agents.iter().enumerate().step_by(2) {
        let h = r.handle();
        h.publish(node_report(&inputs(name, 400.0), &params, Admission::Accepting).0);
        hot.push((i, h.stats().produced + 2));
    }
    let handles: Vec<_> = agents.iter().map(|(_, r)| r.handle()).collect();
    let t_run = Instant::now();
    wait_until(
        "every agent to produce 8 reports, the hot ones one with the change",
        Duration::from_secs(120),
        || {
            handles.iter().all(|h| h.stats().produced >= 8)
                && hot.iter().all(|&(i, n)| handles[i].stats().produced >= n)
        },
    )
    .await;

    let t_stop = Instant::now();
    let stopping: Vec<_> = agents
        .into_iter()
        .map(|(name, r)| {
            tokio::spawn(async move { (name, r.shutdown(Duration::from_secs(30)).await) })
        })
        .collect();
    let mut total = 0;
    for task in stopping {
        let (name, stats) = task.await.unwrap();
        assert_eq!(stats.dropped, 0, "{name}: {stats:?}");
        assert!(stats.produced >= 8, "{name}: {stats:?}");
        assert_eq!(
            stats.acked, stats.produced,
            "{name}: every report acknowledged: {stats:?}"
        );
        let (seq, missed) = s.table.sequence(&name).expect("node known");
        assert_eq!(
            (seq, missed),
            (stats.produced, 0),
            "{name}: sequence complete, no gap"
        );
        total += stats.produced;
    }
    let refusing = (0..1_000)
        .filter(|i| {
            let snap = s
                .table
                .lookup(&format!("node-{i:04}"), Instant::now())
                .unwrap();
            snap.admission == Admission::Refusing
        })
        .count();
    assert_eq!(
        refusing, 500,
        "the significant change reached the scheduler"
    );
    eprintln!(
        "1,000 agents: {total} reports, none lost (start {:?}, run {:?}, stop {:?})",
        t_start.elapsed() - t_run.elapsed(),
        t_run.elapsed() - t_stop.elapsed(),
        t_stop.elapsed()
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qos_loop_runs_on_while_the_scheduler_is_down() {
    let _lock = colo_testkit::host_lock();
    // Reserve a port, then leave it closed: the scheduler is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = ReporterConfig::new(format!("http://127.0.0.1:{port}"));
    c.interval = Duration::from_millis(50);
    c.buffer = 16;
    c.backoff_initial = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(400);
    c.connect_timeout = Duration::from_secs(1);
    let reporter = Reporter::spawn(c).unwrap();
    let handle = reporter.handle();

    // The QoS loop: a plain thread publishing a snapshot every 5 ms, timing each publish.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let qos = {
        let (handle, stop) = (handle.clone(), stop.clone());
        std::thread::spawn(move || {
            let params = ScoringParams::default();
            let mut admission = Admission::Accepting;
            let (mut rounds, mut slowest) = (0u64, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                #[allow(clippy::cast_precision_loss)]
                let psi = (rounds % 50) as f64;
                let (r, a) = node_report(&inputs("lonely", psi), &params, admission);
                admission = a;
                let t = Instant::now();
                handle.publish(r);
                slowest = slowest.max(t.elapsed());
                rounds += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (rounds, slowest)
        })
    };

    wait_until("the buffer to overflow", Duration::from_secs(30), || {
        handle.stats().dropped > 0
    })
    .await;
    let down = handle.stats();
    assert!(
        !down.connected && down.connects == 0 && down.acked == 0,
        "{down:?}"
    );

    // The scheduler comes up on that port: the reporter reconnects and delivers its backlog.
    let s = scheduler_on(rebind(port).await).await;
    wait_until(
        "reconnect and acknowledgements",
        Duration::from_secs(30),
        || {
            let st = handle.stats();
            st.connected && st.acked > 0
        },
    )
    .await;
    // Restart the scheduler: the reporter reconnects again and resends what is unacknowledged.
    s.shutdown().await.unwrap();
    let s = scheduler_on(rebind(port).await).await;
    wait_until("a second connection", Duration::from_secs(30), || {
        handle.stats().connects >= 2
    })
    .await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (rounds, slowest) = qos.join().unwrap();
    let stats = reporter.shutdown(Duration::from_secs(10)).await;
    assert_eq!(stats.acked, stats.produced, "{stats:?}");
    let (seq, _) = s.table.sequence("lonely").unwrap();
    assert_eq!(seq, stats.produced);
    assert!(rounds > 100, "the QoS loop kept running: {rounds} rounds");
    // Generous: publishing is a watch-channel store, microseconds.
    assert!(
        slowest < Duration::from_millis(100),
        "slowest publish {slowest:?}"
    );
    eprintln!("QoS loop: {rounds} rounds, slowest publish {slowest:?}; reporter {stats:?}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_learns_the_node_without_waiting_for_the_next_report() {
    let _lock = colo_testkit::host_lock();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = scheduler_on(listener).await;
    // Reports are an hour apart: only the first snapshot (a significant change) and what the
    // reporter sends on reconnecting can reach a scheduler within this test.
    let mut c = ReporterConfig::new(format!("http://127.0.0.1:{port}"));
    c.interval = Duration::from_secs(3_600);
    c.backoff_initial = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(200);
    let reporter = Reporter::spawn(c).unwrap();
    let handle = reporter.handle();
    let (r, _) = node_report(
        &inputs("steady", 3.0),
        &ScoringParams::default(),
        Admission::Accepting,
    );
    handle.publish(r);
    wait_until(
        "the first report acknowledged",
        Duration::from_secs(30),
        || handle.stats().acked >= 1,
    )
    .await;
    assert!(s.table.sequence("steady").is_some());

    // Everything is acknowledged, so nothing is left to resend; the restarted scheduler has
    // lost its table all the same.
    s.shutdown().await.unwrap();
    let s = scheduler_on(rebind(port).await).await;
    wait_until(
        "the restarted scheduler to know the node",
        Duration::from_secs(30),
        || s.table.sequence("steady").is_some(),
    )
    .await;
    let stats = reporter.shutdown(Duration::from_secs(10)).await;
    assert!(stats.connects >= 2, "{stats:?}");
    assert_eq!(stats.acked, stats.produced, "{stats:?}");
    assert_eq!(s.table.sequence("steady").unwrap().0, stats.produced);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_over_mutual_tls_for_the_certificates_node_only() {
    use colo_agent::serve::reporter::ReporterTls;
    use colo_scheduler::{Listener, Port, ServerTls, TlsFiles};

    let _lock = colo_testkit::host_lock();
    let dir = tempfile::tempdir().unwrap();
    let ca = colo_testkit::TestCa::new(dir.path(), "colo");
    let server = ca.issue("server", "colo-scheduler", &["DNS:localhost"]);
    let node7 = ca.issue("node-7", "node-7", &["DNS:node-7"]);
    let tls = ServerTls::load(
        TlsFiles {
            cert: server.cert,
            key: server.key,
            client_ca: ca.ca.cert.clone(),
        },
        Port::Grpc,
    )
    .unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = grpc.local_addr().unwrap().port();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = colo_scheduler::start(
        SchedulerConfig::default(),
        Listener::tls(grpc, std::sync::Arc::new(tls)),
        http,
    )
    .unwrap();
    let reporter_for = |node: &str| {
        let mut c = ReporterConfig::new(format!("https://localhost:{port}"));
        c.tls = Some(ReporterTls {
            ca: ca.ca.cert.clone(),
            cert: node7.cert.clone(),
            key: node7.key.clone(),
        });
        c.interval = Duration::from_millis(200);
        c.backoff_initial = Duration::from_millis(50);
        c.backoff_max = Duration::from_millis(200);
        let r = Reporter::spawn(c).unwrap();
        let (report, _) = node_report(
            &inputs(node, 1.0),
            &ScoringParams::default(),
            Admission::Accepting,
        );
        r.handle().publish(report);
        r
    };
    let own = reporter_for("node-7");
    let other = reporter_for("node-2");
    wait_until("node-7 over TLS", Duration::from_secs(30), || {
        own.handle().stats().acked >= 3
    })
    .await;
    // The agent holding node-7's certificate keeps trying for node-2 and never gets through.
    wait_until(
        "node-2 refused a few times",
        Duration::from_secs(30),
        || {
            let st = other.handle().stats();
            st.produced >= 3
        },
    )
    .await;
    let refused = other.shutdown(Duration::ZERO).await;
    assert_eq!(refused.acked, 0, "{refused:?}");
    assert!(s.table.sequence("node-2").is_none());
    let stats = own.shutdown(Duration::from_secs(10)).await;
    assert_eq!(stats.acked, stats.produced, "{stats:?}");
    assert_eq!(s.table.sequence("node-7").unwrap().0, stats.produced);

    // An https:// endpoint without the TLS files is refused when the reporter starts.
    assert!(Reporter::spawn(ReporterConfig::new(format!("https://localhost:{port}"))).is_err());
    s.shutdown().await.unwrap();
}
