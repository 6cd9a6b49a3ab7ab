//! `agent.yaml` loading: defaults, selectors, and its mistakes.

use colo_config::{ErrorKind, Source, parse_agent};

fn errors(text: &str) -> Vec<colo_config::ConfigError> {
    parse_agent(&Source::new("agent.yaml", text)).unwrap_err().0
}

#[test]
fn an_empty_file_is_the_default_configuration() {
    let a = parse_agent(&Source::new("agent.yaml", "# nothing\n")).unwrap();
    assert_eq!(a, colo_config::AgentConfig::default());
    assert_eq!(a.api.socket.to_str(), Some("/run/colo/agent.sock"));
    assert_eq!(a.offline.state_dir.to_str(), Some("/var/lib/colo"));
}

#[test]
fn a_selector_takes_exactly_one_form() {
    let e = errors(
        "services:\n  - name: web\n    selector:\n      systemd_unit: web.service\n      pid_file: /run/web.pid\n",
    );
    assert_eq!((e[0].line, e[0].path.as_str()), (4, "services[0].selector"));
    assert!(
        e[0].allowed
            .as_deref()
            .unwrap_or("")
            .contains("`systemd_unit`")
    );
}

#[test]
fn misspelt_fields_get_suggestions() {
    let e = errors("loop:\n  peroid: 50ms\n");
    assert_eq!(e[0].suggestion.as_deref(), Some("period"));
    assert_eq!(e[0].kind, ErrorKind::UnknownField);
    let e = errors(
        "services:\n  - name: web\n    selector: {systemd_unit: web.service}\n    slo: {p99: 5ms, sli: pushd}\n",
    );
    assert_eq!(e[0].suggestion.as_deref(), Some("pushed"));
}

#[test]
fn duplicate_service_names_are_refused_at_the_second() {
    let e = errors(
        "services:\n  - name: web\n    selector: {cgroups: [/a]}\n  - name: web\n    selector: {cgroups: [/b]}\n",
    );
    assert_eq!(
        (e[0].line, e[0].column, e[0].kind),
        (4, 11, ErrorKind::Conflict)
    );
}

#[test]
fn range_and_form_checks_name_the_field() {
    let e = errors(
        "loop:\n  period: 1ms\nscheduler:\n  endpoint: colo-scheduler:7070\noffline:\n  kernel: vmlinux\n",
    );
    let paths: Vec<_> = e.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        paths,
        vec![
            ("loop.period", 2),
            ("scheduler.endpoint", 4),
            ("offline.kernel", 6)
        ]
    );
}

#[test]
fn a_socket_address_must_parse() {
    let e = errors("metrics:\n  listen: localhost\n");
    assert_eq!((e[0].path.as_str(), e[0].line), ("metrics.listen", 2));
}

#[test]
fn the_agents_job_runtime_fields_are_checked() {
    let a = parse_agent(&Source::new(
        "agent.yaml",
        "offline:\n  vmm: /usr/local/bin/colo-vmm\n  max_vcpus: 4\n  stop_grace: 2s\n  drain_on_shutdown: true\n",
    ))
    .unwrap();
    assert_eq!(a.offline.max_vcpus, Some(4));
    assert_eq!(a.offline.stop_grace, std::time::Duration::from_secs(2));
    assert!(a.offline.drain_on_shutdown);
    let e = errors(
        "offline:\n  vmm: colo-vmm\n  vcpus: 2\n  max_vcpus: 1\n  memory_overhead: 1MiB\n  start_timeout: 0s\n  retention: 1s\n  log_limit: 4KiB\n",
    );
    let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
    for p in [
        "offline.vmm",
        "offline.max_vcpus",
        "offline.memory_overhead",
        "offline.start_timeout",
        "offline.retention",
        "offline.log_limit",
    ] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }
}

#[test]
fn the_log_limit_defaults_to_16mib_and_takes_units() {
    let a = parse_agent(&Source::new("agent.yaml", "")).unwrap();
    assert_eq!(a.offline.log_limit.bytes(), 16 << 20);
    let a = parse_agent(&Source::new("agent.yaml", "offline:\n  log_limit: 1GiB\n")).unwrap();
    assert_eq!(a.offline.log_limit.bytes(), 1 << 30);
    let e = errors("offline:\n  log_limit: 128TiB\n");
    assert_eq!((e[0].path.as_str(), e[0].line), ("offline.log_limit", 2));
    assert!(e[0].message.contains("out of range"), "{}", e[0].message);
    assert_eq!(e[0].allowed.as_deref(), Some("64KiB..=64GiB"));
}

#[test]
fn scheduler_tls_goes_with_an_https_endpoint() {
    let a = parse_agent(&Source::new(
        "agent.yaml",
        "scheduler:\n  endpoint: https://colo-scheduler.colo-system.svc:9470\n  tls:\n    ca: /etc/colo/scheduler-ca.crt\n    cert: /etc/colo/agent.crt\n    key: /etc/colo/agent.key\n",
    ))
    .unwrap();
    let tls = a.scheduler.tls.unwrap();
    assert_eq!(tls.cert.to_str(), Some("/etc/colo/agent.crt"));
    // https without the client certificate, and tls with plain http, are both refused.
    let e = errors("scheduler:\n  endpoint: https://colo-scheduler:9470\n");
    assert_eq!(
        (e[0].path.as_str(), e[0].kind),
        ("scheduler.endpoint", ErrorKind::Conflict)
    );
    assert!(
        e[0].message.contains("needs scheduler.tls"),
        "{}",
        e[0].message
    );
    let e = errors(
        "scheduler:\n  endpoint: http://colo-scheduler:9470\n  tls: {ca: /a, cert: /b, key: c}\n",
    );
    let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["scheduler.endpoint", "scheduler.tls.key"]);
    let e = errors("scheduler:\n  tls: {ca: /a, cert: /b}\n");
    assert_eq!(e[0].path.as_str(), "scheduler.tls");
}

#[test]
fn node_names_are_kubernetes_node_names() {
    for good in ["node-1", "ip-10-0-1-17.eu-west-1.compute.internal"] {
        assert!(
            parse_agent(&Source::new(
                "agent.yaml",
                format!("node:\n  name: {good}\n")
            ))
            .is_ok(),
            "{good}"
        );
    }
    for bad in ["Node-1", "node_1", "-node", "a..b"] {
        let e = errors(&format!("node:\n  name: {bad}\n"));
        assert_eq!(e[0].path.as_str(), "node.name", "{bad}");
    }
}
