//! The HTTP/1.1 server of the extender port: each connection served by hyper with a deadline on
//! the request header, which also closes connections that sit idle (or half-open) longer than
//! that between requests, and with graceful shutdown. Body sizes and deadlines are the
//! handlers' ([`BoundedBody`](crate::k8s::BoundedBody)).
//!
//! HTTP/1.1 only: kube-scheduler and Prometheus speak it to this port, and one protocol keeps
//! the timeouts in one place.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{mpsc, watch};

use crate::listen::Conn;

/// Serves `app` on every connection from `conns` until `shutdown` turns true, then lets the
/// requests in progress finish (the caller bounds how long).
pub(crate) async fn serve(
    mut conns: mpsc::Receiver<Conn>,
    app: Router,
    header_read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    loop {
        let conn = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            c = conns.recv() => match c {
                Some(c) => c,
                None => break,
            },
        };
        let addr = conn.peer().addr;
        let served = graceful.watch(
            http.serve_connection(TokioIo::new(conn), TowerToHyperService::new(app.clone())),
        );
        tokio::spawn(async move {
            if let Err(e) = served.await {
                // Header timeouts and clients that hang up land here: routine, not alarming.
                tracing::debug!(%addr, "HTTP connection ended: {e}");
            }
        });
    }
    drop(conns);
    graceful.shutdown().await;
    Ok(())
}
