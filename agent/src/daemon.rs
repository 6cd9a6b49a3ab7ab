//! `colo-agent`'s life: start (lock the state directory, load the policy, set up the cgroup
//! subtree, re-adopt jobs, serve), run (watchdog, policy reload on SIGHUP, garbage collection),
//! and stop (SIGTERM/SIGINT: stop serving, leave or drain the VMs).

use std::os::fd::AsRawFd;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::routing::get;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::host::cgroup::{CgroupTree, Hierarchies, detect};
use crate::jobs::JobManager;
use crate::jobs::registry::Registry;
use crate::notify::Notifier;
use crate::qos::policy_store::PolicyStore;
use crate::qos::report::ReportSink;
use crate::qos::view::{QosView, SliInbox};
use crate::serve::api::{AgentService, NodeInfo};
use crate::serve::metrics::Metrics;
use crate::serve::server;
use crate::settings::{AgentSettings, HostFacts};

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another agent holds the state directory.
    #[error("another colo-agent holds {0}; stop it first (or use another offline.state_dir)")]
    Locked(String),
    /// The policy files are invalid (each error names `FILE:LINE:COL`).
    #[error("invalid policy: {0}")]
    Policy(#[from] colo_config::ConfigErrors),
    /// A setup step failed.
    #[error("{0}")]
    Setup(String),
}

impl DaemonError {
    /// True for mistakes in the configuration, which a restart cannot fix: the agent exits
    /// with [`crate::check::EX_CONFIG`] for them, which the unit does not restart.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Policy(_))
    }
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DaemonError + '_ {
    move |e| DaemonError::Setup(format!("{what}: {e}"))
}

/// Holds `<state_dir>/agent.lock` for the agent's lifetime.
#[derive(Debug)]
struct StateLock {
    _file: std::fs::File,
}

fn lock_state_dir(dir: &std::path::Path) -> Result<StateLock, DaemonError> {
    std::fs::create_dir_all(dir).map_err(setup("cannot create the state directory"))?;
    let path = dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(setup("cannot open the agent lock"))?;
    // SAFETY: flock on a descriptor we own; LOCK_NB makes it fail instead of blocking.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(DaemonError::Locked(path.display().to_string()));
    }
    Ok(StateLock { _file: file })
}

/// Removes the API socket file when dropped, so a start that fails after binding it (a bad
/// `api.tcp`, `metrics.listen`, ...) leaves no socket behind. Only a socket is removed: a file of
/// another kind in its place was never ours.
#[derive(Debug)]
struct SocketFile<'a>(&'a std::path::Path);

impl Drop for SocketFile<'_> {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(self.0)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            let _ = std::fs::remove_file(self.0);
        }
    }
}

/// Opens the cgroup subtree, resolving a slice-name root against the agent's own cgroup.
fn open_cgroups(settings: &AgentSettings) -> Result<CgroupTree, DaemonError> {
    let mut cg = settings.cgroup.clone();
    // Detected once: the job side and the QoS loop both use this tree's hierarchies.
    let hierarchies = Hierarchies::detect(cg.version, &cg.mount).map_err(setup("cgroups"))?;
    let version = hierarchies.version();
    if let Some(root) = &cg.root {
        let own = detect::own_v2_cgroup().ok();
        cg.root = Some(
            AgentSettings::resolve_cgroup_root(root, version, own.as_deref())
                .map_err(setup("cgroup.root"))?,
        );
    }
    CgroupTree::open_on(hierarchies, &cg).map_err(setup("cgroups"))
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(settings: AgentSettings) -> Result<(), DaemonError> {
    let started = Instant::now();
    let notifier = Notifier::from_env();
    let _lock = lock_state_dir(&settings.state_dir)?;
    let policy = PolicyStore::open(settings.policy_paths.clone())?;
    let cgroups = open_cgroups(&settings)?;
    tracing::info!(version = %cgroups.version(), root = %cgroups.root().display(), "cgroup subtree ready");
    if !settings.manager.vmm_binary.is_file() {
        tracing::warn!(path = %settings.manager.vmm_binary.display(), "colo-vmm not found; jobs will fail to start until it is installed (offline.vmm_binary)");
    }
    let registry = Registry::open(&settings.state_dir).map_err(setup("registry"))?;
    let mut manager = settings.manager.clone();
    manager.containers = crate::jobs::runtime::container::detect(
        &settings.config.offline.container,
        &settings.state_dir,
    );
    match &manager.containers {
        Ok(h) => {
            tracing::info!(runtime = %h.runtime.version_or_name(), "container sandbox available")
        }
        Err(why) => tracing::info!(%why, "no container sandbox"),
    }
    manager.linux = crate::jobs::runtime::linux::detect(
        &settings.config.offline.linux,
        &settings.config.offline.kernel,
        &settings.state_dir,
    );
    match &manager.linux {
        Ok(_) => tracing::info!("Linux-guest programs available"),
        Err(why) => tracing::info!(%why, "no Linux-guest programs"),
    }
    let jobs = JobManager::open(manager, cgroups, registry)
        .await
        .map_err(setup("job manager"))?;
    let metrics = match Metrics::install() {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "metrics disabled");
            None
        }
    };
    let host = HostFacts::detect();
    let latest = crate::qos::LatestSnapshot::default();
    let service = AgentService {
        jobs: jobs.clone(),
        policy: policy.clone(),
        node: Arc::new(NodeInfo {
            name: settings.node_name.clone(),
            cpus: host.cpus,
            memory_bytes: host.memory_bytes,
            started,
            services: settings.services.clone(),
        }),
        qos: Arc::new(RwLock::new(QosView::default())),
        sli: Arc::new(SliInbox::default()),
        latest: latest.clone(),
        limits: settings.manager.limits.clone(),
        tcp_access: Arc::new(crate::serve::api::access::TcpAccess {
            full_access: settings
                .tcp
                .as_ref()
                .map(|t| t.full_access.clone())
                .unwrap_or_default(),
            insecure_any_client: settings.tcp.as_ref().is_some_and(|t| t.insecure_any_client),
        }),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let reporter = settings
        .config
        .scheduler
        .endpoint
        .as_ref()
        .and_then(|endpoint| {
            let mut rc = crate::serve::reporter::ReporterConfig::new(endpoint.clone());
            rc.interval = settings.config.scheduler.report_interval;
            rc.tls = settings.config.scheduler.tls.as_ref().map(|t| {
                crate::serve::reporter::ReporterTls {
                    ca: t.ca.clone(),
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                }
            });
            crate::serve::reporter::Reporter::spawn(rc)
                .map_err(|e| tracing::error!(error = %e, "node reports disabled"))
                .ok()
        });
    let qos_shared = crate::qos::QosShared {
        view: service.qos.clone(),
        sli: service.sli.clone(),
        summary: Arc::default(),
        latest: latest.clone(),
        reporter: reporter
            .as_ref()
            .map(|r| Arc::new(r.handle()) as Arc<dyn ReportSink>),
        node_name: settings.node_name.clone(),
    };
    let qos_loop = crate::qos::spawn(
        &settings.config,
        Arc::new(jobs.clone()),
        policy.clone(),
        qos_shared,
        stop_rx.clone(),
    )
    .map_err(|e| tracing::error!(error = %e, "the QoS loop did not start; the offline side is not throttled"))
    .ok();
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers = tokio::task::JoinSet::new();
    // The handlers go in before anything is served: a client that sees the socket may signal
    // the agent at once, and SIGHUP's default action would kill it.
    let mut hup = signal(SignalKind::hangup()).map_err(setup("SIGHUP handler"))?;
    let mut term = signal(SignalKind::terminate()).map_err(setup("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup("SIGINT handler"))?;
    let _socket_file = SocketFile(&settings.socket);
    let unix = server::bind_unix(&settings.socket, settings.socket_group.as_deref())
        .map_err(setup("api.socket"))?;
    {
        let svc = service.clone();
        let rx = stop_rx.clone();
        servers.spawn(async move {
            if let Err(e) = server::serve_unix(unix, svc, stopped(rx)).await {
                tracing::error!(error = %e, "the Unix-socket API stopped");
            }
        });
    }
    let mut tcp_server = None;
    if let Some(tcp) = &settings.tcp {
        if tcp.insecure_any_client {
            tracing::warn!(target: "colo::audit", listen = %tcp.listen,
                "api.tcp.insecure_any_client is set: any network client that reaches this port has full access to the job API (submit, cancel, policy reload); set api.tcp.client_ca for mutual TLS");
        }
        let (listener, tls) = server::bind_tcp(tcp).await.map_err(setup("api.tcp"))?;
        tcp_server = Some(server::TcpServer::start(
            listener,
            tls,
            service.clone(),
            stop_rx.clone(),
        ));
    }
    if let Some(addr) = settings.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(setup("metrics.listen"))?;
        let router = http_router(metrics.clone(), jobs.clone())
            .merge(crate::serve::koordinator::routes(latest.clone()));
        let rx = stop_rx.clone();
        servers.spawn(async move {
            if let Err(e) = server::serve_http(listener, router, stopped(rx)).await {
                tracing::error!(error = %e, "the HTTP listener stopped");
            }
        });
    }
    tracing::info!(socket = %settings.socket.display(), tcp = ?settings.tcp.as_ref().map(|t| t.listen),
        metrics = ?settings.metrics_listen, version = crate::AGENT_VERSION, "colo-agent serving");
    let status = |jobs: &JobManager| {
        let u = jobs.budget_use();
        format!(
            "serving; {} live jobs, {}/{} millicores reserved",
            u.jobs, u.reserved_millicores, u.budget.cpu_millicores
        )
    };
    notifier.ready(&status(&jobs));

    let watchdog = notifier.watchdog_interval();
    let far = Duration::from_secs(3600);
    let mut dog = tokio::time::interval(watchdog.unwrap_or(far));
    let mut gc = tokio::time::interval(Duration::from_secs(60));
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let store = policy.clone();
                let _ = tokio::task::spawn_blocking(move || store.reload()).await;
                if let (Some(srv), Some(tcp)) = (tcp_server.as_mut(), settings.tcp.as_ref()) {
                    match srv.reload(tcp) {
                        Ok(()) => tracing::info!(target: "colo::audit", op = "reload_certificates", outcome = "ok",
                            "api.tcp certificates re-read"),
                        Err(e) => tracing::error!(target: "colo::audit", op = "reload_certificates", outcome = "refused",
                            error = %e, "api.tcp certificates not reloaded; the old ones stay in force"),
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = dog.tick(), if watchdog.is_some() => {
                // Pinged from the runtime itself: a wedged runtime stops the pings.
                notifier.ping();
                let s = status(&jobs);
                if s != last_status {
                    notifier.status(&s);
                    last_status = s;
                }
            }
            _ = gc.tick() => jobs.collect_garbage().await,
        }
    }
    tracing::info!("shutting down");
    notifier.stopping();
    let _ = stop_tx.send(true);
    if let Some(h) = qos_loop {
        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
    }
    if let Some(r) = reporter {
        r.shutdown(Duration::from_secs(1)).await;
    }
    jobs.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while servers.join_next().await.is_some() {}
        if let Some(t) = tcp_server {
            t.join().await;
        }
    })
    .await;
    let _ = std::fs::remove_file(&settings.socket);
    tracing::info!("colo-agent stopped");
    Ok(())
}

/// The HTTP routes: `/metrics` and `/healthz`. Other components (the Koordinator view, ...)
/// merge their own routes into this router.
pub fn http_router(metrics: Option<Metrics>, jobs: JobManager) -> axum::Router {
    let j = jobs.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                let jobs = j.clone();
                async move {
                    let body = tokio::task::spawn_blocking(move || match m {
                        Some(m) => m.render(&jobs),
                        None => {
                            let mut s = String::new();
                            crate::serve::metrics::render_live(&mut s, &jobs);
                            s
                        }
                    })
                    .await
                    .unwrap_or_default();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let shutting = jobs.is_shutting_down();
                async move {
                    if shutting {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "shutting down\n",
                        )
                    } else {
                        (axum::http::StatusCode::OK, "ok\n")
                    }
                }
            }),
        )
}
