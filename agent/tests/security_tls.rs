//! TCP means mutual TLS (or an explicit, warned opt-in), with real binaries over real sockets:
//! a read-only identity cannot submit, a certificate from another CA is refused, certificates
//! reload on SIGHUP, and every change and refusal is audited.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use colo_testkit::{CertFiles, TestCa};
use common::{Options, TestAgent, audit_lines, free_port, root_guard, text};

/// Subject alternative names of every certificate here: valid for the agent at localhost.
const LOCALHOST: &[&str] = &["DNS:localhost", "IP:127.0.0.1"];

/// coloctl over TCP, trusting `ca`, with `client`'s certificate or none.
fn coloctl_tcp(ca: &TestCa, port: u16, client: Option<&CertFiles>, args: &[&str]) -> Output {
    let mut cmd = Command::new(colo_testkit::workspace_binary("coloctl"));
    cmd.args([
        "--endpoint",
        &format!("https://localhost:{port}"),
        "--tls-ca",
    ])
    .arg(&ca.ca.cert);
    if let Some(c) = client {
        cmd.arg("--tls-cert")
            .arg(&c.cert)
            .arg("--tls-key")
            .arg(&c.key);
    }
    cmd.args(args).output().unwrap()
}

/// Rewrites the agent's `api:` section with a TCP listener (`tcp_extra`: the lines after `key:`).
fn with_tcp(agent: &TestAgent, server: &CertFiles, port: u16, tcp_extra: &str) {
    let yaml = std::fs::read_to_string(&agent.config).unwrap();
    let base = match yaml.find("  tcp:\n") {
        Some(i) => {
            let end = yaml[i..].find("metrics:").map_or(yaml.len(), |j| i + j);
            format!("{}{}", &yaml[..i], &yaml[end..])
        }
        None => yaml,
    };
    let yaml = base.replacen(
        "metrics:\n",
        &format!(
            "  tcp:\n    listen: 127.0.0.1:{port}\n    cert: {}\n    key: {}\n{tcp_extra}metrics:\n",
            server.cert.display(),
            server.key.display()
        ),
        1,
    );
    std::fs::write(&agent.config, yaml).unwrap();
}

#[test]
fn tcp_is_mutual_tls_with_read_only_and_full_identities() {
    let test = "tcp_is_mutual_tls_with_read_only_and_full_identities";
    let Some(_lock) = root_guard(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let other_ca = TestCa::new(dir.path(), "other");
    let server = ca.issue("agent", "localhost", LOCALHOST);
    let launcher = ca.issue("launcher", "launcher", LOCALHOST);
    let reader = ca.issue("reader", "reader", LOCALHOST);
    let stranger = other_ca.issue("stranger", "launcher", LOCALHOST);
    let port = free_port();
    let mut agent = TestAgent::start(Options::default());

    // 1. A TCP listener without client_ca: the agent refuses to start, naming the key and the
    //    opt-in.
    with_tcp(&agent, &server, port, "");
    agent.terminate();
    agent.spawn();
    let mut child = agent.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the agent started without client_ca"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st.code(), Some(78), "{}", agent.log_text());
    let log = agent.log_text();
    assert!(log.contains("api.tcp.client_ca"), "{log}");
    assert!(log.contains("insecure_any_client: true"), "{log}");

    // 2. With the explicit opt-in it starts, warns, and a client without a certificate works.
    with_tcp(&agent, &server, port, "    insecure_any_client: true\n");
    agent.spawn();
    agent.wait_serving();
    assert!(
        agent
            .log_text()
            .contains("api.tcp.insecure_any_client is set"),
        "{}",
        agent.log_text()
    );
    let o = coloctl_tcp(&ca, port, None, &["node", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));

    // 3. Mutual TLS: launcher may change things, reader may only read.
    with_tcp(
        &agent,
        &server,
        port,
        &format!(
            "    client_ca: {}\n    full_access: [launcher]\n",
            ca.ca.cert.display()
        ),
    );
    agent.terminate();
    agent.spawn();
    agent.wait_serving();
    let o = coloctl_tcp(&ca, port, None, &["node"]);
    // TLS 1.3: the client's side of the handshake completes; the server's refusal of the
    // missing or foreign certificate arrives with the first request.
    let refused = |o: &Output| {
        let t = text(o);
        // The client sees the connection cut ("transport error", "operation was canceled")
        // or the handshake fail ("cannot reach the agent"); never an answer.
        o.status.code() == Some(3) && o.stdout.is_empty() && t.contains("coloctl")
    };
    assert!(refused(&o), "no certificate: {}", text(&o));
    let o = coloctl_tcp(&ca, port, Some(&stranger), &["node"]);
    assert!(refused(&o), "another CA: {}", text(&o));
    let o = coloctl_tcp(&ca, port, Some(&reader), &["node", "-o", "json"]);
    assert!(o.status.success(), "reader may read: {}", text(&o));
    let submit = [
        "submit",
        "--name",
        "tcp-job",
        "--memory-mib",
        "16",
        "--cpu-units",
        "1",
        "--output",
        "json",
    ];
    let o = coloctl_tcp(&ca, port, Some(&reader), &submit);
    assert_eq!(o.status.code(), Some(3), "reader submitted: {}", text(&o));
    assert!(
        text(&o).contains("submit needs full access; cert:reader may only read"),
        "{}",
        text(&o)
    );
    let o = coloctl_tcp(&ca, port, Some(&reader), &["policy", "reload"]);
    assert_eq!(o.status.code(), Some(3), "reader reloaded: {}", text(&o));
    let o = coloctl_tcp(&ca, port, Some(&launcher), &submit);
    assert!(o.status.success(), "launcher may submit: {}", text(&o));

    // 4. The audit trail names the caller of every change and refusal.
    let audit = audit_lines(&agent);
    assert!(
        audit
            .iter()
            .any(|l| l.contains("submit") && l.contains("cert:launcher") && l.contains("ok")),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("submit") && l.contains("cert:reader") && l.contains("refused")),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("reload_policy") && l.contains("cert:reader")),
        "{audit:#?}"
    );

    // 5. Certificates reload on SIGHUP: new connections see the new server certificate.
    // `timeout`: s_client may wait on a connection the server keeps open after the handshake.
    let subject = || {
        let o = Command::new("timeout")
            .args([
                "10",
                "openssl",
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
                "-cert",
            ])
            .arg(&launcher.cert)
            .arg("-key")
            .arg(&launcher.key)
            .arg("-CAfile")
            .arg(&ca.ca.cert)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_default()
            .to_string()
    };
    assert!(!subject().contains("rotated"), "{}", subject());
    let _rotated = ca.issue("agent", "rotated", LOCALHOST);
    // SAFETY: kill(2) on the agent this test started.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(40);
    while !subject().contains("rotated") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served after SIGHUP:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = coloctl_tcp(&ca, port, Some(&launcher), &["node"]);
    assert!(o.status.success(), "after the reload: {}", text(&o));
    eprintln!(
        "{test}: refused without client_ca (78), opt-in warned, mTLS identities enforced, SIGHUP reloaded the certificate"
    );
}
