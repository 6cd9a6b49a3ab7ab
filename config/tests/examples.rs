//! The shipped examples are valid and mean what their comments say.

use std::path::PathBuf;
use std::time::Duration;

use colo_config::agent::{Selector, SliSource};
use colo_config::policy::Mode;
use colo_config::units::StallRate;
use colo_config::{AgentConfig, Policy, load_agent, load_policy};

fn example(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

#[test]
fn the_full_example_policy_is_the_default_policy() {
    let p = load_policy(&[example("policy.yaml")]).unwrap();
    let mut expected = Policy::default();
    expected.metadata.name = Some("example".into());
    expected.metadata.description = Some("every field at its default value".into());
    assert_eq!(p, expected);
}

#[test]
fn the_example_policy_names_every_field() {
    // Every key of the effective policy appears in the commented example.
    let text = std::fs::read_to_string(example("policy.yaml")).unwrap();
    let yaml = Policy::default().to_yaml();
    for line in yaml.lines() {
        let key = line
            .trim_start()
            .trim_start_matches("- ")
            .split(':')
            .next()
            .unwrap_or("");
        if !key.is_empty() && line.contains(':') {
            assert!(
                text.contains(&format!("{key}:")),
                "policy.yaml lacks `{key}`"
            );
        }
    }
}

#[test]
fn the_policy_directory_merges_field_by_field_in_lexical_order() {
    let p = load_policy(&[example("policy.d")]).unwrap();
    assert_eq!(p.mode, Mode::Enforce, "20-… overrides 10-…");
    assert_eq!(
        p.metadata.name.as_deref(),
        Some("fleet-base"),
        "kept from 10-…"
    );
    assert_eq!(p.memory.evict_at.value(), 92.0, "from 10-…");
    let rd = p.interference.run_delay.unwrap();
    assert_eq!(rd.high, StallRate::from_millis_per_sec(10), "from 20-…");
    assert_eq!(rd.low, StallRate::from_millis_per_sec(5), "from 10-…");
    assert_eq!(
        p.interference.sli, None,
        "null in 20-… switches the signal off"
    );
    assert_eq!(p.cpu.suppress.headroom.value(), 20.0);
    assert_eq!(
        p.cpu.suppress.step_up,
        Policy::default().cpu.suppress.step_up,
        "default"
    );
}

#[test]
fn the_example_agent_config_is_valid() {
    let a = load_agent(&example("agent.yaml")).unwrap();
    assert_eq!(a.node.name.as_deref(), Some("node-1"));
    assert_eq!(a.services.len(), 3);
    assert_eq!(
        a.services[0].selector,
        Selector::SystemdUnit("nginx.service".into())
    );
    let slo = a.services[0].slo.as_ref().unwrap();
    assert_eq!(slo.p99, Duration::from_millis(5));
    assert!(matches!(&slo.sli, SliSource::Probe(p) if p.interval == Duration::from_millis(100)));
    assert_eq!(a.services[1].slo.as_ref().unwrap().sli, SliSource::Pushed);
    assert_eq!(
        a.services[2].selector,
        Selector::PidFile("/run/cache.pid".into())
    );
    assert_eq!(a.offline.memory.bytes(), 512 << 20);
    assert_eq!(a.offline.budget.cpu.map(|c| c.get()), Some(6.0));
    assert_eq!(a.qos_loop.period, Duration::from_millis(50));
    assert_eq!(a.api.tcp.as_ref().map(|t| t.listen.port()), Some(7443));
    let tls = a.scheduler.tls.as_ref().unwrap();
    assert_eq!(tls.cert.to_str(), Some("/etc/colo/tls/node-1.crt"));
    assert_ne!(a, AgentConfig::default());
}
