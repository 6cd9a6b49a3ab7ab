//! The KubeSchedulerConfiguration colo ships (`deploy/kubernetes/kube-scheduler/config.yaml`,
//! the same text as in docs/kubernetes.md) decoded as kube-scheduler decodes it: strictly (an
//! unknown or misspelt field is an error, names are case-sensitive), into the documented fields
//! of `kubescheduler.config.k8s.io/v1` (`KubeSchedulerConfiguration`, `Extender`,
//! `ExtenderManagedResource`, `ExtenderTLSConfig`), then checked against kube-scheduler's
//! validation of extenders (a prioritizing extender has a positive weight, at most one binds,
//! managed resources are extended resource names, `httpTimeout` is a Go duration) and against
//! colo-scheduler (its verbs, path prefix and batch resources). The Kubernetes OpenAPI schemas
//! have no KubeSchedulerConfiguration, so scripts/validate-deploy.sh cannot check it.

use std::path::PathBuf;

use serde::Deserialize;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubescheduler.config.k8s.io/v1` `KubeSchedulerConfiguration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct KubeSchedulerConfiguration {
    api_version: String,
    kind: String,
    parallelism: Option<i32>,
    leader_election: Option<LeaderElection>,
    client_connection: Option<ClientConnection>,
    enable_profiling: Option<bool>,
    enable_contention_profiling: Option<bool>,
    percentage_of_nodes_to_score: Option<i32>,
    pod_initial_backoff_seconds: Option<i64>,
    pod_max_backoff_seconds: Option<i64>,
    #[serde(default)]
    profiles: Vec<serde_json::Value>,
    #[serde(default)]
    extenders: Vec<Extender>,
    delay_cache_until_active: Option<bool>,
}

/// component-base `LeaderElectionConfiguration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct LeaderElection {
    leader_elect: Option<bool>,
    lease_duration: Option<String>,
    renew_deadline: Option<String>,
    retry_period: Option<String>,
    resource_lock: Option<String>,
    resource_name: Option<String>,
    resource_namespace: Option<String>,
}

/// component-base `ClientConnectionConfiguration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ClientConnection {
    kubeconfig: Option<String>,
    accept_content_types: Option<String>,
    content_type: Option<String>,
    qps: Option<f32>,
    burst: Option<i32>,
}

/// `Extender`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Extender {
    url_prefix: String,
    filter_verb: Option<String>,
    preempt_verb: Option<String>,
    prioritize_verb: Option<String>,
    weight: Option<i64>,
    bind_verb: Option<String>,
    #[serde(rename = "enableHTTPS")]
    enable_https: Option<bool>,
    tls_config: Option<ExtenderTlsConfig>,
    http_timeout: Option<String>,
    node_cache_capable: Option<bool>,
    #[serde(default)]
    managed_resources: Vec<ManagedResource>,
    ignorable: Option<bool>,
}

/// `ExtenderTLSConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ExtenderTlsConfig {
    insecure: Option<bool>,
    server_name: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    #[serde(rename = "caFile")]
    ca_file: Option<String>,
    cert_data: Option<String>,
    key_data: Option<String>,
    #[serde(rename = "caData")]
    ca_data: Option<String>,
}

/// `ExtenderManagedResource`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ManagedResource {
    name: String,
    ignored_by_scheduler: Option<bool>,
}

/// Go's `time.ParseDuration` (as `metav1.Duration` decodes): `[-+]?(\d*\.?\d+(ns|us|µs|ms|s|m|h))+`.
fn go_duration_seconds(s: &str) -> Option<f64> {
    let mut rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut parts = 0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let (unit, scale) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total += number * scale;
        parts += 1;
    }
    (parts > 0).then_some(total)
}

/// Kubernetes' extended resource names: `DOMAIN/NAME` outside the `kubernetes.io` domain.
fn extended_resource_name(s: &str) -> bool {
    let Some((domain, name)) = s.split_once('/') else {
        return false;
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.starts_with(|c: char| c.is_ascii_alphanumeric())
            && l.ends_with(|c: char| c.is_ascii_alphanumeric())
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let qualified = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    domain.len() <= 253
        && domain.split('.').all(label)
        && domain != "kubernetes.io"
        && !domain.ends_with(".kubernetes.io")
        && qualified
}

/// kube-scheduler's checks of its extenders (`ValidateKubeSchedulerConfiguration`), as messages.
fn invalid_extenders(c: &KubeSchedulerConfiguration) -> Vec<String> {
    let mut out = Vec::new();
    if c.api_version != "kubescheduler.config.k8s.io/v1" {
        out.push(format!("apiVersion {}", c.api_version));
    }
    if c.kind != "KubeSchedulerConfiguration" {
        out.push(format!("kind {}", c.kind));
    }
    let binders = c.extenders.iter().filter(|e| e.bind_verb.is_some()).count();
    if binders > 1 {
        out.push("only one extender can implement bind".into());
    }
    for (i, e) in c.extenders.iter().enumerate() {
        if e.prioritize_verb.is_some() && e.weight.unwrap_or(0) <= 0 {
            out.push(format!("extenders[{i}].weight must be positive"));
        }
        if let Some(t) = &e.http_timeout
            && go_duration_seconds(t).is_none()
        {
            out.push(format!(
                "extenders[{i}].httpTimeout {t:?} is not a duration"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (j, r) in e.managed_resources.iter().enumerate() {
            if !extended_resource_name(&r.name) {
                out.push(format!(
                    "extenders[{i}].managedResources[{j}].name {:?}",
                    r.name
                ));
            }
            if !seen.insert(&r.name) {
                out.push(format!("extenders[{i}].managedResources[{j}] duplicate"));
            }
        }
    }
    out
}

fn decode(text: &str) -> Result<KubeSchedulerConfiguration, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

fn shipped() -> String {
    std::fs::read_to_string(repo().join("deploy/kubernetes/kube-scheduler/config.yaml")).unwrap()
}

#[test]
fn the_shipped_configuration_decodes_and_validates_as_kube_scheduler_would() {
    let c = decode(&shipped()).unwrap();
    assert_eq!(invalid_extenders(&c), Vec::<String>::new());
    assert_eq!(c.extenders.len(), 1);
    let e = &c.extenders[0];
    // colo-scheduler serves {prefix}/filter, /prioritize and /preempt; it never binds.
    assert_eq!(e.filter_verb.as_deref(), Some("filter"));
    assert_eq!(e.prioritize_verb.as_deref(), Some("prioritize"));
    assert_eq!(e.preempt_verb.as_deref(), Some("preempt"));
    assert!(e.bind_verb.is_none());
    // That colo-scheduler, run as deploy/kubernetes/deployment.yaml runs it, serves these URLs
    // is checked in tests/deploy.rs.
    // Mutual TLS: colo-scheduler refuses a plain port off loopback.
    assert!(e.url_prefix.starts_with("https://"), "{}", e.url_prefix);
    assert_eq!(e.enable_https, Some(true));
    let tls = e
        .tls_config
        .as_ref()
        .expect("tlsConfig with a client certificate");
    assert!(tls.cert_file.is_some() && tls.key_file.is_some() && tls.ca_file.is_some());
    assert_ne!(tls.insecure, Some(true));
    assert_eq!(
        e.ignorable,
        Some(true),
        "an outage of colo must block nothing"
    );
    assert_eq!(e.node_cache_capable, Some(true));
    assert_eq!(
        go_duration_seconds(e.http_timeout.as_deref().unwrap()),
        Some(2.0)
    );
    let names: Vec<&str> = e
        .managed_resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            colo_scheduler::config::DEFAULT_BATCH_CPU_RESOURCE,
            colo_scheduler::config::DEFAULT_BATCH_MEMORY_RESOURCE
        ]
    );
    assert!(
        e.managed_resources
            .iter()
            .all(|r| r.ignored_by_scheduler == Some(true))
    );
}

#[test]
fn docs_kubernetes_md_shows_the_shipped_configuration() {
    let doc = std::fs::read_to_string(repo().join("docs/kubernetes.md")).unwrap();
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(yaml, _)| yaml))
        .find(|b| b.contains("kind: KubeSchedulerConfiguration"))
        .expect("a KubeSchedulerConfiguration block in docs/kubernetes.md");
    assert_eq!(block, shipped());
}

#[test]
fn the_decoder_refuses_what_kube_scheduler_refuses() {
    let text = shipped();
    for (mistake, from, to) in [
        ("misspelt field", "urlPrefix:", "urlprefix:"),
        ("wrong case", "enableHTTPS:", "enableHttps:"),
        (
            "unknown field",
            "ignorable: true",
            "ignorable: true\n    retries: 3",
        ),
        (
            "list for a string",
            "filterVerb: filter",
            "filterVerb: [filter]",
        ),
    ] {
        assert!(text.contains(from), "{mistake}: {from}");
        let bad = text.replacen(from, to, 1);
        assert!(decode(&bad).is_err(), "{mistake} accepted:\n{bad}");
    }
    for (mistake, from, to) in [
        ("weight 0", "weight: 2 ", "weight: 0 "),
        ("bad duration", "httpTimeout: 2s", "httpTimeout: 2 seconds"),
        // YAML's 2 reaches us as the text "2": a Go duration needs its unit.
        ("number for a duration", "httpTimeout: 2s", "httpTimeout: 2"),
        (
            "native resource",
            "colo.io/batch-cpu",
            "kubernetes.io/batch-cpu",
        ),
        ("no domain", "colo.io/batch-memory", "batch-memory"),
    ] {
        assert!(text.contains(from), "{mistake}: {from}");
        let c = decode(&text.replacen(from, to, 1)).unwrap();
        assert!(!invalid_extenders(&c).is_empty(), "{mistake} accepted");
    }
    assert_eq!(go_duration_seconds("1m30s"), Some(90.0));
    assert_eq!(go_duration_seconds("1.5s"), Some(1.5));
    assert_eq!(go_duration_seconds("500ms"), Some(0.5));
    assert_eq!(go_duration_seconds("2"), None);
}
