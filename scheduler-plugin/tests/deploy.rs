//! colo-scheduler as a deployable service, against the real binary:
//!
//! * `deploy/kubernetes/`: the Deployment's container, run with its own arguments and the policy
//!   of the ConfigMap, serves the probes' `/healthz` and the extender URLs of the
//!   KubeSchedulerConfiguration; the ports agree between the flags, the container, the Service,
//!   the KubeSchedulerConfiguration, the docs and the example agent.yaml; the image is the
//!   documented one at this version; the kustomization lists every object.
//! * `packaging/colo-scheduler.service` passes `systemd-analyze verify`, and the exit status it
//!   does not restart is the one bad flags give.
//! * Logs: plain text with no ANSI escape into a file, `COLO_LOG` filters, `--log-format json`
//!   gives one JSON object a line. `/metrics`: the extender latency is a histogram.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colo_scheduler::http_client::HttpConnection;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// The address of `--http-listen` from the "serving" log line, text or JSON.
fn http_addr(line: &str) -> Option<SocketAddr> {
    let rest = line
        .split_once("http_addr=")
        .or_else(|| line.split_once("\"http_addr\":\""))?
        .1;
    rest.split(|c: char| c.is_whitespace() || c == '"')
        .next()?
        .parse()
        .ok()
}

/// A running colo-scheduler and the log lines it wrote until it served.
struct Running {
    child: Child,
    http: SocketAddr,
    early: Vec<String>,
    rest: std::io::Lines<BufReader<std::process::ChildStderr>>,
}

fn start(args: &[String], env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"));
    cmd.args(args)
        .env_remove("COLO_LOG")
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut early = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("colo-scheduler {args:?} exited: {early:?}"))
            .unwrap();
        let addr = http_addr(&line);
        early.push(line);
        if let Some(a) = addr {
            break a;
        }
        assert!(Instant::now() < deadline, "not serving: {early:?}");
    };
    Running {
        child,
        http,
        early,
        rest: lines,
    }
}

impl Running {
    /// SIGTERM; the exit must be clean. Returns every later log line.
    fn stop(mut self) -> Vec<String> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let rest: Vec<String> = self.rest.map_while(Result::ok).collect();
        let st = self.child.wait().unwrap();
        assert!(st.success(), "{st}: {rest:?}");
        rest
    }
}

/// The one container of the Deployment.
fn container() -> Value {
    let d = yaml("deploy/kubernetes/deployment.yaml");
    let cs = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1);
    cs[0].clone()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// `--flag=value` of the container's arguments.
fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")))
        .unwrap_or_else(|| panic!("{flag}= not in {args:?}"))
}

const BATCH_POD: &str = r#"{"metadata":{"name":"job-1","namespace":"etl","uid":"p-1"},"spec":{"containers":[{"name":"main","resources":{"requests":{"colo.io/batch-cpu":"1000"}}}]}}"#;

#[tokio::test]
async fn the_deployment_as_written_serves_the_probes_and_the_extender_urls() {
    let c = container();
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(c.get("command").is_none(), "the image's ENTRYPOINT runs");
    // The policy the container reads is the ConfigMap's, mounted at the --policy path.
    let cm = yaml("deploy/kubernetes/policy-configmap.yaml");
    let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let policy_path = arg(&args, "--policy");
    let key = policy_path
        .strip_prefix(&format!("{mount}/"))
        .expect("--policy inside the ConfigMap's mount");
    let policy = cm["data"][key]
        .as_str()
        .expect("the ConfigMap holds --policy");
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join(key);
    std::fs::write(&policy_file, policy).unwrap();
    // Ports: the flags listen where the container, its probes and the Service say.
    let ports = c["ports"].as_array().unwrap();
    let port = |name: &str| {
        ports.iter().find(|p| p["name"] == name).unwrap()["containerPort"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        u64::from(port_of(arg(&args, "--grpc-listen"))),
        port("grpc")
    );
    assert_eq!(
        u64::from(port_of(arg(&args, "--http-listen"))),
        port("http")
    );
    // The HTTPS port wants client certificates, which the kubelet's probes lack: they check
    // the port is open.
    assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], "http");
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], "http");
    // Both ports serve mutual TLS (a plain port off loopback is refused at start).
    for flag in [
        "--tls-cert",
        "--tls-key",
        "--grpc-client-ca",
        "--http-client-ca",
    ] {
        assert!(arg(&args, flag).starts_with("/etc/colo/tls/"), "{flag}");
    }

    // Run it as written, bound to loopback with free ports (plain there: the TLS files live in
    // the cluster's Secret), the policy at a local path.
    let tls_flag = |a: &str| {
        [
            "--tls-cert=",
            "--tls-key=",
            "--grpc-client-ca=",
            "--http-client-ca=",
        ]
        .iter()
        .any(|f| a.starts_with(f))
    };
    let run_args: Vec<String> = args
        .iter()
        .filter(|a| !tls_flag(a))
        .map(|a| {
            if a.starts_with("--grpc-listen=") {
                "--grpc-listen=127.0.0.1:0".to_owned()
            } else if a.starts_with("--http-listen=") {
                "--http-listen=127.0.0.1:0".to_owned()
            } else if a.starts_with("--policy=") {
                format!("--policy={}", policy_file.display())
            } else {
                a.clone()
            }
        })
        .collect();
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = start(&run_args, &env);
    // --log-format=json: every line is a JSON object.
    for l in &s.early {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string(), "{l}");
    }
    let mut http = HttpConnection::connect(s.http).await.unwrap();
    let probe = "/healthz";
    let r = http.get(probe).await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"ok\n".as_slice()));

    // The KubeSchedulerConfiguration's URLs, on this server.
    let ksc = yaml("deploy/kubernetes/kube-scheduler/config.yaml");
    let e = &ksc["extenders"][0];
    let prefix = e["urlPrefix"].as_str().unwrap();
    // The shipped URL is https (mutual TLS in the cluster); here the same paths, plain.
    let path = prefix
        .strip_prefix("https://")
        .and_then(|r| r.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    let names = r#"["node-a"]"#;
    let body = format!(r#"{{"Pod":{BATCH_POD},"Nodes":null,"NodeNames":{names}}}"#);
    for verb in ["filterVerb", "prioritizeVerb"] {
        let url = format!("{path}/{}", e[verb].as_str().unwrap());
        let r = http.post_json(&url, body.as_bytes()).await.unwrap();
        assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
    }
    let filter = http
        .post_json(&format!("{path}/filter"), body.as_bytes())
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&filter.body).contains("no report from the node's colo-agent"),
        "{}",
        String::from_utf8_lossy(&filter.body)
    );
    let preempt = format!(
        r#"{{"Pod":{BATCH_POD},"NodeNameToMetaVictims":{{"node-a":{{"Pods":[{{"UID":"v"}}],"NumPDBViolations":0}}}}}}"#
    );
    let url = format!("{path}/{}", e["preemptVerb"].as_str().unwrap());
    let r = http.post_json(&url, preempt.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{url}");
    // Latency as a histogram (summaries cannot be aggregated across replicas or restarts).
    let m = String::from_utf8(http.get("/metrics").await.unwrap().body).unwrap();
    assert!(
        m.contains("# TYPE colo_scheduler_extender_request_seconds histogram"),
        "{m}"
    );
    assert!(
        m.contains("colo_scheduler_extender_request_seconds_bucket{verb=\"filter\",le=\"0.001\"}"),
        "{m}"
    );
    assert!(!m.contains(" summary\n"), "{m}");
    for family in m.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split_whitespace().next().unwrap();
        assert!(
            m.lines().any(|l| l.starts_with(&format!("# HELP {name} "))),
            "{name} has no HELP in\n{m}"
        );
    }
    drop(http);
    s.stop();
}

#[test]
fn ports_image_and_objects_agree_everywhere() {
    // The Service forwards to the container's named ports, on the node ports the clients use.
    let svc = yaml("deploy/kubernetes/service.yaml");
    let ports = svc["spec"]["ports"].as_array().unwrap();
    let node_port = |name: &str| {
        let p = ports.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["targetPort"], name);
        p["nodePort"].as_u64().unwrap()
    };
    let ksc = yaml("deploy/kubernetes/kube-scheduler/config.yaml");
    let prefix = ksc["extenders"][0]["urlPrefix"].as_str().unwrap();
    assert!(
        prefix.contains(&format!(":{}/", node_port("http"))),
        "{prefix} is not the Service's http node port"
    );
    let docs = read("docs/kubernetes.md");
    assert!(
        docs.contains(&format!("endpoint: https://NODE:{}", node_port("grpc"))),
        "docs/kubernetes.md tells agents the Service's grpc node port"
    );
    // Outside Kubernetes the example agent.yaml reports to colo-scheduler's default port.
    let help = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let default_grpc = help
        .split("--grpc-listen")
        .nth(1)
        .and_then(|r| r.split("[default: ").nth(1))
        .and_then(|r| r.split(']').next())
        .unwrap();
    let agent: Value = yaml("config/examples/agent.yaml");
    let endpoint = agent["scheduler"]["endpoint"].as_str().unwrap();
    assert_eq!(
        port_of(endpoint),
        port_of(default_grpc),
        "config/examples/agent.yaml reports to {endpoint}, colo-scheduler listens on {default_grpc}"
    );
    // The image: the documented name, at this version.
    let image = container()["image"].as_str().unwrap().to_owned();
    assert_eq!(
        image,
        format!(
            "registry.example.invalid/colo/colo-scheduler:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(docs.contains(&image), "docs/kubernetes.md names {image}");
    let containerfile = read("deploy/Containerfile");
    assert!(
        containerfile.contains(&image),
        "deploy/Containerfile's build command"
    );
    assert!(containerfile.contains("cargo build --release --locked -p colo-scheduler"));
    assert!(containerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/colo-scheduler"]"#));
    assert!(containerfile.contains("EXPOSE 9470 9471"));
    // It runs as the user the pod's securityContext names.
    let pod = &yaml("deploy/kubernetes/deployment.yaml")["spec"]["template"]["spec"];
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(containerfile.contains(&format!("USER {uid}:{uid}")));
    assert_eq!(pod["serviceAccountName"], "colo-scheduler");
    assert!(read(".dockerignore").lines().any(|l| l == "target/"));
    // The kustomization applies every object of the directory.
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let mut listed: Vec<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    listed.sort();
    files.sort();
    assert_eq!(listed, files);
}

#[test]
fn the_systemd_unit_verifies_and_does_not_restart_bad_flags() {
    let unit = read("packaging/colo-scheduler.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{key}= missing"))
            .to_owned()
    };
    assert_eq!(value("ExecStart"), "/usr/local/bin/colo-scheduler");
    assert_eq!(value("Restart"), "on-failure");
    // Bad flags exit with the status the unit does not restart.
    let bad = Command::new(env!("CARGO_BIN_EXE_colo-scheduler"))
        .args(["--stale-nodes", "sometimes"])
        .output()
        .unwrap();
    let code = bad.status.code().unwrap().to_string();
    assert_eq!(value("RestartPreventExitStatus"), code);
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("COLO_REQUIRE_KVM").as_deref() != Ok("1"),
            "systemd-analyze is missing: apt-get install systemd (scripts/install-deps.sh)"
        );
        eprintln!("\n*** SKIPPED systemd-analyze verify: no systemd-analyze ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("colo-scheduler.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/colo-scheduler",
            env!("CARGO_BIN_EXE_colo-scheduler"),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

fn listen_args() -> Vec<String> {
    vec![
        "--grpc-listen=127.0.0.1:0".into(),
        "--http-listen=127.0.0.1:0".into(),
    ]
}

#[test]
fn logs_have_no_colour_off_a_terminal_follow_colo_log_and_come_as_json() {
    let ansi = |lines: &[String]| lines.iter().any(|l| l.contains('\u{1b}'));
    // Text to a pipe (a file, a collector): no escape codes, even with a colourful TERM.
    let s = start(&listen_args(), &[("TERM", "xterm-256color")]);
    let mut lines = s.early.clone();
    lines.extend(s.stop());
    assert!(!ansi(&lines), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(" INFO ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:?}");

    // COLO_LOG=warn: the info lines go (the serving line is how this test finds the port, so
    // ask for it alone at info).
    let s = start(
        &listen_args(),
        &[("COLO_LOG", "warn,colo_scheduler::server=info")],
    );
    let rest = s.stop();
    assert!(!rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    // RUST_LOG is not colo's variable: it changes nothing.
    let s = start(&listen_args(), &[("RUST_LOG", "off")]);
    assert!(s.stop().iter().any(|l| l.contains("SIGTERM")));

    // JSON, one object a line, with the message and the fields.
    let mut args = listen_args();
    args.push("--log-format=json".into());
    let s = start(&args, &[]);
    let mut lines = s.early.clone();
    lines.extend(s.stop());
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["fields"]["message"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("\"http_addr\"")));
    // Under systemd (JOURNAL_STREAM set) text lines carry no timestamp: journald adds one.
    let s = start(&listen_args(), &[("JOURNAL_STREAM", "8:1234")]);
    let first = s.early[0].clone();
    s.stop();
    assert!(first.trim_start().starts_with("INFO"), "{first}");
}
