//! The job API against a hostile client, with real binaries over real sockets:
//!
//! * paths are capabilities: disks, kernels and images only beneath the operator's roots,
//!   resolved without `..` or symlinks, opened by the agent and handed to the VMM;
//! * TCP means mutual TLS (or an explicit, warned opt-in); a read-only identity cannot submit;
//!   certificates reload on SIGHUP; every change and refusal is audited;
//! * inputs are bounded: SLI reports (unknown services refused, values capped), names counted in
//!   characters with bidi and invisible characters refused, echoed input cut short.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use common::{Options, TestAgent};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn root_guard(test: &str) -> Option<colo_testkit::HostLock> {
    if !colo_testkit::root_or_skip(test) {
        return None;
    }
    Some(colo_testkit::host_lock())
}

/// A test certificate authority and the certificates it signs, made with the openssl CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let p = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        p.ca("ca");
        p.ca("other-ca");
        p
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn openssl(&self, args: &[&str]) {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (apt package openssl)");
        assert!(st.success(), "openssl {args:?}");
    }

    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
        ]);
    }

    /// `name.crt` / `name.key` for `subject`, signed by `ca`.
    fn cert(&self, name: &str, subject: &str, ca: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ]);
        std::fs::write(
            self.path("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "1",
            "-extfile",
            "ext",
        ]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// coloctl over TCP with `client` (a `name.crt`/`name.key` pair of `pki`) or no certificate.
fn coloctl_tcp(pki: &Pki, port: u16, client: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coloctl"));
    cmd.args([
        "--endpoint",
        &format!("https://localhost:{port}"),
        "--tls-ca",
    ])
    .arg(pki.path("ca.crt"));
    if let Some(c) = client {
        cmd.arg("--tls-cert")
            .arg(pki.path(&format!("{c}.crt")))
            .arg("--tls-key")
            .arg(pki.path(&format!("{c}.key")));
    }
    cmd.args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Rewrites the agent's `api:` section with a TCP listener (`tcp_extra`: the lines after `key:`).
fn with_tcp(agent: &TestAgent, pki: &Pki, port: u16, tcp_extra: &str) {
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
            pki.path("agent.crt").display(),
            pki.path("agent.key").display()
        ),
        1,
    );
    std::fs::write(&agent.config, yaml).unwrap();
}

/// The agent's audit lines (target `colo::audit`, message `audit`).
fn audit_lines(agent: &TestAgent) -> Vec<String> {
    agent
        .log_text()
        .lines()
        .filter(|l| l.contains(" audit op="))
        .map(str::to_string)
        .collect()
}

#[test]
fn tcp_is_mutual_tls_with_read_only_and_full_identities() {
    let test = "tcp_is_mutual_tls_with_read_only_and_full_identities";
    let Some(_lock) = root_guard(test) else {
        return;
    };
    let pki = Pki::new();
    pki.cert("agent", "/CN=localhost", "ca");
    pki.cert("launcher", "/CN=launcher", "ca");
    pki.cert("reader", "/CN=reader", "ca");
    pki.cert("stranger", "/CN=launcher", "other-ca");
    let port = free_port();
    let mut agent = TestAgent::start(Options::default());

    // 1. A TCP listener without client_ca: the agent refuses to start, naming the key and the
    //    opt-in.
    with_tcp(&agent, &pki, port, "");
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
    with_tcp(&agent, &pki, port, "    insecure_any_client: true\n");
    agent.spawn();
    agent.wait_serving();
    assert!(
        agent
            .log_text()
            .contains("api.tcp.insecure_any_client is set"),
        "{}",
        agent.log_text()
    );
    let o = coloctl_tcp(&pki, port, None, &["node", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));

    // 3. Mutual TLS: launcher may change things, reader may only read.
    with_tcp(
        &agent,
        &pki,
        port,
        &format!(
            "    client_ca: {}\n    full_access: [launcher]\n",
            pki.path("ca.crt").display()
        ),
    );
    agent.terminate();
    agent.spawn();
    agent.wait_serving();
    let o = coloctl_tcp(&pki, port, None, &["node"]);
    // TLS 1.3: the client's side of the handshake completes; the server's refusal of the
    // missing or foreign certificate arrives with the first request.
    let refused = |o: &Output| {
        let t = text(o);
        // The client sees the connection cut ("transport error", "operation was canceled")
        // or the handshake fail ("cannot reach the agent"); never an answer.
        o.status.code() == Some(3) && o.stdout.is_empty() && t.contains("coloctl")
    };
    assert!(refused(&o), "no certificate: {}", text(&o));
    let o = coloctl_tcp(&pki, port, Some("stranger"), &["node"]);
    assert!(refused(&o), "another CA: {}", text(&o));
    let o = coloctl_tcp(&pki, port, Some("reader"), &["node", "-o", "json"]);
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
    let o = coloctl_tcp(&pki, port, Some("reader"), &submit);
    assert_eq!(o.status.code(), Some(3), "reader submitted: {}", text(&o));
    assert!(
        text(&o).contains("submit needs full access; cert:reader may only read"),
        "{}",
        text(&o)
    );
    let o = coloctl_tcp(&pki, port, Some("reader"), &["policy", "reload"]);
    assert_eq!(o.status.code(), Some(3), "reader reloaded: {}", text(&o));
    let o = coloctl_tcp(&pki, port, Some("launcher"), &submit);
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
    let subject = |pki: &Pki| {
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
            .arg(pki.path("launcher.crt"))
            .arg("-key")
            .arg(pki.path("launcher.key"))
            .arg("-CAfile")
            .arg(pki.path("ca.crt"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_default()
            .to_string()
    };
    assert!(!subject(&pki).contains("rotated"), "{}", subject(&pki));
    pki.cert("agent", "/O=rotated/CN=localhost", "ca");
    // SAFETY: kill(2) on the agent this test started.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(40);
    while !subject(&pki).contains("rotated") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served after SIGHUP:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = coloctl_tcp(&pki, port, Some("launcher"), &["node"]);
    assert!(o.status.success(), "after the reload: {}", text(&o));
    eprintln!(
        "{test}: refused without client_ca (78), opt-in warned, mTLS identities enforced, SIGHUP reloaded the certificate"
    );
}

/// Submits `spec` and returns the refusal's code and message.
fn refusal(agent: &TestAgent, spec: pb::JobSpec) -> (tonic::Code, String) {
    rt().block_on(async {
        let mut c = agent.client().await;
        let e = c
            .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
            .await
            .expect_err("the submit was accepted");
        (e.code(), e.message().to_string())
    })
}

fn with_disk(key: &str, path: &Path, read_only: bool) -> pb::JobSpec {
    let mut s = common::workload(key, 1, 0, 0);
    s.disks.push(pb::Disk {
        path: path.display().to_string(),
        read_only,
        ..Default::default()
    });
    s
}

fn digest(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

#[test]
fn clients_name_files_only_beneath_the_operator_roots() {
    let test = "clients_name_files_only_beneath_the_operator_roots";
    let Some(_lock) = common::vm_guard(test) else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let volumes = agent.volumes_dir();
    // A root-only file outside the roots, as /etc/shadow would be.
    let secret = agent.dir.path().join("secret");
    std::fs::write(&secret, "root:$6$hash:19000::::::\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let before = digest(&secret);
    std::os::unix::fs::symlink(&secret, volumes.join("link")).unwrap();
    nix::unistd::mkfifo(
        &volumes.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let dotdot = PathBuf::from(format!("{}/../secret", volumes.display()));
    for (key, path, needle) in [
        ("dotdot", dotdot.as_path(), "offline.volume_roots"),
        (
            "outside",
            secret.as_path(),
            "is not beneath offline.volume_roots",
        ),
        (
            "etc",
            Path::new("/etc/shadow"),
            "is not beneath offline.volume_roots",
        ),
        (
            "symlink",
            &volumes.join("link"),
            "symlinks are not followed",
        ),
        ("fifo", &volumes.join("fifo"), "is a FIFO"),
        ("missing", &volumes.join("nope.img"), "No such file"),
    ] {
        let (code, msg) = refusal(&agent, with_disk(key, path, false));
        assert_eq!(code, tonic::Code::InvalidArgument, "{key}: {msg}");
        assert!(msg.contains("spec.disks[0].path"), "{key}: {msg}");
        assert!(msg.contains(needle), "{key}: {msg}");
        assert!(
            msg.contains(&volumes.display().to_string()),
            "{key}: the refusal names the allowed root: {msg}"
        );
    }
    // A kernel must lie beneath the image roots.
    let mut linux = common::workload("kernel", 0, 0, 0);
    linux.guest = Some(pb::job_spec::Guest::Linux(pb::LinuxGuest {
        kernel_path: "/etc/shadow".into(),
        ..Default::default()
    }));
    let (code, msg) = refusal(&agent, linux);
    assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");
    assert!(msg.contains("offline.image_roots"), "{msg}");
    assert!(
        msg.contains(&agent.images_dir().display().to_string()),
        "{msg}"
    );
    assert_eq!(digest(&secret), before, "a refused job touched the file");
    // Nothing was admitted or left behind.
    assert!(agent.offline_leftovers().is_empty());

    // A disk beneath the root works end to end: the VMM writes it through the descriptor the
    // agent opened.
    let disk = volumes.join("scratch.img");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let mut spec = with_disk("inside", &disk, false);
    if let Some(pb::job_spec::Guest::Workload(w)) = &mut spec.guest {
        w.io = "write:1".into();
    }
    let job = rt().block_on(async {
        let mut c = agent.client().await;
        let j = common::submit(&mut c, spec).await;
        common::wait_end(&mut c, &j.id, Duration::from_secs(60)).await
    });
    assert_eq!(common::state(&job), pb::JobState::Succeeded, "{job:?}");
    assert!(
        digest(&disk).iter().any(|b| *b != 0),
        "the guest's writes reached the disk"
    );
    assert_eq!(digest(&secret), before);
    eprintln!(
        "{test}: 7 escapes refused with the roots named; a disk beneath the root was written through its descriptor"
    );
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn reports_names_and_echoes_are_bounded() {
    let test = "reports_names_and_echoes_are_bounded";
    let Some(_lock) = root_guard(test) else {
        return;
    };
    let online = colo_testkit::TestCgroup::new(&["cpu", "cpuacct"], 64 << 20).unwrap();
    let agent = TestAgent::start(Options {
        extra: format!(
            "services:\n  - name: web\n    selector:\n      cgroups: [/{}]\n",
            online.name()
        ),
        ..Options::default()
    });
    let pid = agent.pid();
    let values = vec![1_000u64; colo_agent::serve::api::MAX_SLI_VALUES_PER_REPORT];
    let start_rss = rss_kib(pid);
    let (unknown, known, after_unknown, after_known) = rt().block_on(async {
        let mut c = agent.client().await;
        // Unknown services: NOT_FOUND, nothing kept.
        let mut unknown = None;
        for i in 0..300 {
            let e = c
                .report_sli(pb::ReportSliRequest {
                    service: format!("nope-{i}"),
                    latency_us: values.clone(),
                })
                .await
                .unwrap_err();
            unknown.get_or_insert((e.code(), e.message().to_string()));
        }
        let after_unknown = rss_kib(pid);
        // Too many values in one call.
        let e = c
            .report_sli(pb::ReportSliRequest {
                service: "web".into(),
                latency_us: vec![1; colo_agent::serve::api::MAX_SLI_VALUES_PER_REPORT + 1],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        // A flood for a known service: kept up to a fixed capacity.
        let mut known = 0;
        for _ in 0..300 {
            known += c
                .report_sli(pb::ReportSliRequest {
                    service: "web".into(),
                    latency_us: values.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .accepted;
        }
        (unknown.unwrap(), known, after_unknown, rss_kib(pid))
    });
    assert_eq!(unknown.0, tonic::Code::NotFound, "{}", unknown.1);
    assert!(
        unknown.1.contains("web"),
        "names the known services: {}",
        unknown.1
    );
    assert_eq!(
        known,
        300 * colo_agent::serve::api::MAX_SLI_VALUES_PER_REPORT as u64
    );
    eprintln!(
        "{test}: agent RSS {start_rss} KiB at start, {after_unknown} KiB after 300 x {} values for unknown services, {after_known} KiB after 300 x {} for a known one",
        values.len(),
        values.len()
    );
    assert!(
        after_known < start_rss + 64 * 1024,
        "RSS grew from {start_rss} to {after_known} KiB"
    );

    // Names: characters, not bytes; bidi overrides refused; a huge id is not echoed whole.
    rt().block_on(async {
        let mut c = agent.client().await;
        let mut s = common::workload("bidi", 1, 0, 0);
        s.name = "report\u{202E}fdp.exe".into();
        let e = c
            .submit_job(pb::SubmitJobRequest { spec: Some(s) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("U+202E"), "{e}");
        let e = c
            .get_job(pb::GetJobRequest {
                id: "x".repeat(100_000),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().len() < 400,
            "echoed {} bytes",
            e.message().len()
        );
    });
    let audit = audit_lines(&agent);
    assert!(
        audit
            .iter()
            .any(|l| l.contains("report_sli") && l.contains("refused")),
        "{audit:#?}"
    );
    assert!(
        audit.iter().all(|l| l.len() < 2_000),
        "an audit line echoed a huge input"
    );
}

#[test]
fn a_vmm_moved_out_of_its_cgroup_is_evicted_with_the_reason() {
    let test = "a_vmm_moved_out_of_its_cgroup_is_evicted_with_the_reason";
    let Some(_lock) = common::vm_guard(test) else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let job = rt().block_on(async {
        let mut c = agent.client().await;
        let j = common::submit(&mut c, common::workload("moved", 0, 600, 0)).await;
        common::wait_for(&mut c, &j.id, Duration::from_secs(30), |j| {
            common::state(j) == pb::JobState::Running
        })
        .await
    });
    // Behind the agent's back: the VMM leaves its job cgroup for the test's own root (a cgroup
    // this test created), where no job limit applies.
    let hierarchy = common::CONTROLLERS[0];
    let root_procs = agent.cgroup.dir(hierarchy).join("cgroup.procs");
    std::fs::write(&root_procs, job.vmm_pid.to_string()).unwrap();
    let t0 = Instant::now();
    let ended = rt().block_on(async {
        let mut c = agent.client().await;
        common::wait_end(&mut c, &job.id, Duration::from_secs(30)).await
    });
    assert_eq!(
        (common::state(&ended), common::reason(&ended)),
        (pb::JobState::Preempted, pb::EndReason::Evicted),
        "{ended:?}"
    );
    assert!(
        ended.message.contains("is no longer in its cgroup"),
        "{}",
        ended.message
    );
    eprintln!(
        "{test}: ended {:.1} s after the move: {}",
        t0.elapsed().as_secs_f64(),
        ended.message
    );
}
