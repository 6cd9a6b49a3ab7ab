//! Range and consistency checks of `agent.yaml` beyond what the types say.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::{AgentConfig, Selector, SliSource};
use crate::error::ErrorKind;
use crate::policy::validate::Violation;
use crate::units::format_duration;

fn invalid(
    out: &mut Vec<Violation>,
    path: String,
    value: impl ToString,
    message: &str,
    allowed: &str,
) {
    let value = value.to_string();
    out.push(Violation {
        path,
        related: None,
        kind: ErrorKind::InvalidValue,
        message: format!("invalid value `{value}`: {message}"),
        value,
        allowed: Some(allowed.to_owned()),
    });
}

fn absolute(out: &mut Vec<Violation>, path: &str, p: &Path) {
    if !p.is_absolute() {
        invalid(
            out,
            path.to_owned(),
            p.display(),
            "must be an absolute path",
            "a path starting with `/`",
        );
    }
}

fn within(out: &mut Vec<Violation>, path: &str, d: Duration, lo: Duration, hi: Duration) {
    if !(lo..=hi).contains(&d) {
        let allowed = format!("{}..={}", format_duration(lo), format_duration(hi));
        invalid(
            out,
            path.to_owned(),
            format_duration(d),
            "out of range",
            &allowed,
        );
    }
}

/// Least `offline.log_limit`.
const LOG_LIMIT_MIN: u64 = 64 << 10;
/// Most `offline.log_limit`.
const LOG_LIMIT_MAX: u64 = 64 << 30;

/// Every violation in `a`.
pub(crate) fn validate(a: &AgentConfig) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(name) = &a.node.name {
        // As Kubernetes (and colo-scheduler) check node names: a DNS-1123 subdomain.
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                let b = label.as_bytes();
                b.first().is_some_and(u8::is_ascii_alphanumeric)
                    && b.last().is_some_and(u8::is_ascii_alphanumeric)
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            });
        if !ok {
            invalid(
                &mut out,
                "node.name".into(),
                name,
                "not a Kubernetes node name",
                "lower-case letters, digits, `-` and `.`, starting and ending with a letter or \
                 digit, 1 to 253 characters",
            );
        }
    }
    let root = &a.cgroup.root;
    if root.is_empty() || root.split('/').any(|s| s == "..") || root == "/" {
        invalid(
            &mut out,
            "cgroup.root".into(),
            root,
            "the agent needs a subtree of its own",
            "a slice name such as `colo.slice` or a path such as `/colo`",
        );
    }

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in a.services.iter().enumerate() {
        let p = format!("services[{i}]");
        if s.name.is_empty() {
            invalid(
                &mut out,
                format!("{p}.name"),
                "",
                "a service needs a name",
                "a non-empty string",
            );
        } else if let Some(first) = seen.insert(&s.name, i) {
            out.push(Violation {
                path: format!("{p}.name"),
                related: Some(format!("services[{first}].name")),
                kind: ErrorKind::Conflict,
                message: format!(
                    "service name `{}` is already used by services[{first}]",
                    s.name
                ),
                value: s.name.clone(),
                allowed: None,
            });
        }
        match &s.selector {
            Selector::Cgroups(list) if list.is_empty() => {
                invalid(
                    &mut out,
                    format!("{p}.selector.cgroups"),
                    "[]",
                    "name at least one cgroup",
                    "a list of cgroup paths",
                );
            }
            Selector::Cgroups(list) => {
                for (j, c) in list.iter().enumerate() {
                    if !c.starts_with('/') || c.split('/').any(|s| s == "..") {
                        invalid(
                            &mut out,
                            format!("{p}.selector.cgroups[{j}]"),
                            c,
                            "cgroup paths are absolute within the hierarchy",
                            "a path such as `/system.slice/nginx.service`",
                        );
                    }
                }
            }
            Selector::SystemdUnit(u) => {
                let ok = [".service", ".scope", ".slice"]
                    .iter()
                    .any(|suffix| u.ends_with(suffix) && u.len() > suffix.len());
                if !ok {
                    invalid(
                        &mut out,
                        format!("{p}.selector.systemd_unit"),
                        u,
                        "not a systemd unit name",
                        "a name ending in `.service`, `.scope` or `.slice`",
                    );
                }
            }
            Selector::PidFile(f) => absolute(&mut out, &format!("{p}.selector.pid_file"), f),
        }
        if let Some(slo) = &s.slo {
            if slo.p99.is_zero() {
                invalid(
                    &mut out,
                    format!("{p}.slo.p99"),
                    "0s",
                    "a zero latency target can never be met",
                    "a duration > 0",
                );
            }
            if let SliSource::Probe(probe) = &slo.sli {
                let pp = format!("{p}.slo.sli.probe");
                let rest = probe.url.strip_prefix("http://").unwrap_or("");
                if rest.is_empty() || rest.starts_with('/') {
                    invalid(
                        &mut out,
                        format!("{pp}.url"),
                        &probe.url,
                        "the probe speaks plain HTTP to a local service",
                        "a URL such as `http://127.0.0.1:8080/health`",
                    );
                }
                within(
                    &mut out,
                    &format!("{pp}.interval"),
                    probe.interval,
                    Duration::from_millis(10),
                    Duration::from_secs(60),
                );
                if probe.timeout.is_zero() || probe.timeout > Duration::from_secs(60) {
                    invalid(
                        &mut out,
                        format!("{pp}.timeout"),
                        format_duration(probe.timeout),
                        "out of range",
                        "1ms..=1m",
                    );
                }
            }
        }
    }

    let o = &a.offline;
    absolute(&mut out, "offline.kernel", &o.kernel);
    absolute(&mut out, "offline.workload", &o.workload);
    absolute(&mut out, "offline.state_dir", &o.state_dir);
    for (key, roots) in [
        ("offline.image_roots", &o.image_roots),
        ("offline.volume_roots", &o.volume_roots),
    ] {
        for (i, r) in roots.iter().enumerate() {
            let field = format!("{key}[{i}].path");
            absolute(&mut out, &field, &r.path);
            if r.path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
                || r.path == Path::new("/")
            {
                invalid(
                    &mut out,
                    field,
                    r.path.display(),
                    "a root must be a dedicated directory",
                    "an absolute directory other than `/`, without `..`",
                );
            }
        }
    }
    if !(1..=64).contains(&o.vcpus) {
        invalid(
            &mut out,
            "offline.vcpus".into(),
            o.vcpus,
            "out of range",
            "1..=64",
        );
    }
    if o.memory.bytes() < (16 << 20) || !o.memory.bytes().is_multiple_of(1 << 20) {
        invalid(
            &mut out,
            "offline.memory".into(),
            o.memory,
            "guest memory is whole MiB, at least 16MiB",
            "a multiple of 1MiB, >= 16MiB",
        );
    }
    if let Some(v) = &o.vmm {
        absolute(&mut out, "offline.vmm", v);
    }
    if let Some(m) = o.max_vcpus
        && !(o.vcpus..=64).contains(&m)
    {
        let allowed = format!("{}..=64 (at least offline.vcpus)", o.vcpus);
        invalid(
            &mut out,
            "offline.max_vcpus".into(),
            m,
            "out of range",
            &allowed,
        );
    }
    if !o.memory_overhead.bytes().is_multiple_of(1 << 20) || o.memory_overhead.bytes() < (16 << 20)
    {
        invalid(
            &mut out,
            "offline.memory_overhead".into(),
            o.memory_overhead,
            "the VMM's own memory is whole MiB, at least 16MiB",
            "a multiple of 1MiB, >= 16MiB",
        );
    }
    if !(LOG_LIMIT_MIN..=LOG_LIMIT_MAX).contains(&o.log_limit.bytes()) {
        invalid(
            &mut out,
            "offline.log_limit".into(),
            o.log_limit,
            "out of range: below 64KiB too little of a console is kept to debug a job; above 64GiB \
             one job's logs can fill a state directory",
            "64KiB..=64GiB",
        );
    }
    let s = Duration::from_secs;
    within(
        &mut out,
        "offline.start_timeout",
        o.start_timeout,
        s(1),
        s(600),
    );
    within(
        &mut out,
        "offline.stop_grace",
        o.stop_grace,
        Duration::ZERO,
        s(600),
    );
    within(
        &mut out,
        "offline.retention",
        o.retention,
        s(60),
        s(365 * 24 * 3600),
    );
    let j = &o.jail;
    if j.uid_base == 0 || j.uid_count == 0 || j.uid_base.checked_add(j.uid_count).is_none() {
        invalid(
            &mut out,
            "offline.jail.uid_base".into(),
            format!("{} (uid_count {})", j.uid_base, j.uid_count),
            "the jail's ids must be a non-empty range above 0 (root) that fits 32 bits",
            "uid_base >= 1, uid_count >= 1, uid_base + uid_count < 4294967296",
        );
    }
    if let Some(c) = o.budget.cpu
        && c.get() <= 0.0
    {
        invalid(
            &mut out,
            "offline.budget.cpu".into(),
            c,
            "a zero budget runs no offline work",
            "above 0, or null for the whole node",
        );
    }

    absolute(&mut out, "api.socket", &a.api.socket);
    if let Some(tcp) = &a.api.tcp {
        absolute(&mut out, "api.tcp.cert", &tcp.cert);
        absolute(&mut out, "api.tcp.key", &tcp.key);
        match (&tcp.client_ca, tcp.insecure_any_client) {
            (Some(ca), false) => absolute(&mut out, "api.tcp.client_ca", ca),
            (None, false) => out.push(Violation {
                path: "api.tcp.client_ca".into(),
                related: Some("api.tcp.insecure_any_client".into()),
                kind: ErrorKind::Conflict,
                message: "a TCP listener needs client certificates: set api.tcp.client_ca to \
                          the CA bundle they must chain to (mutual TLS), or accept any network \
                          client with full access by setting `api.tcp.insecure_any_client: true`"
                    .into(),
                value: "null".into(),
                allowed: Some("a CA bundle path".into()),
            }),
            (Some(_), true) => out.push(Violation {
                path: "api.tcp.insecure_any_client".into(),
                related: Some("api.tcp.client_ca".into()),
                kind: ErrorKind::Conflict,
                message: "`insecure_any_client: true` contradicts api.tcp.client_ca: \
                          remove one of them"
                    .into(),
                value: "true".into(),
                allowed: None,
            }),
            (None, true) => {}
        }
        for (i, id) in tcp.full_access.iter().enumerate() {
            if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
                invalid(
                    &mut out,
                    format!("api.tcp.full_access[{i}]"),
                    id,
                    "not a certificate identity",
                    "a certificate subject common name, 1..=256 printable characters",
                );
            }
        }
    }

    if let Some(ep) = &a.scheduler.endpoint {
        let https = ep.starts_with("https://");
        let rest = ep
            .strip_prefix("http://")
            .or_else(|| ep.strip_prefix("https://"))
            .unwrap_or("");
        if rest.is_empty() || rest.starts_with('/') {
            invalid(
                &mut out,
                "scheduler.endpoint".into(),
                ep,
                "not a scheduler address",
                "`https://host:port` (with scheduler.tls) or `http://127.0.0.1:port`",
            );
        } else if https != a.scheduler.tls.is_some() {
            let message = if https {
                "`https://` needs scheduler.tls (ca, cert, key): colo-scheduler serves \
                 only mutual TLS"
            } else {
                "scheduler.tls is set but the endpoint is plain `http://`: write it as \
                 `https://`"
            };
            out.push(Violation {
                path: "scheduler.endpoint".into(),
                related: Some("scheduler.tls".into()),
                kind: ErrorKind::Conflict,
                message: message.to_owned(),
                value: ep.clone(),
                allowed: None,
            });
        }
    }
    if let Some(tls) = &a.scheduler.tls {
        absolute(&mut out, "scheduler.tls.ca", &tls.ca);
        absolute(&mut out, "scheduler.tls.cert", &tls.cert);
        absolute(&mut out, "scheduler.tls.key", &tls.key);
    }
    within(
        &mut out,
        "scheduler.report_interval",
        a.scheduler.report_interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );

    let l = &a.qos_loop;
    within(
        &mut out,
        "loop.period",
        l.period,
        Duration::from_millis(10),
        Duration::from_secs(10),
    );
    within(
        &mut out,
        "loop.psi_trigger_window",
        l.psi_trigger_window,
        Duration::from_millis(100),
        Duration::from_secs(10),
    );
    if l.psi_trigger_stall.is_zero() || l.psi_trigger_stall >= l.psi_trigger_window {
        out.push(Violation {
            path: "loop.psi_trigger_stall".into(),
            related: Some("loop.psi_trigger_window".into()),
            kind: ErrorKind::Conflict,
            message: format!(
                "`{}` must be above 0 and below loop.psi_trigger_window (`{}`)",
                format_duration(l.psi_trigger_stall),
                format_duration(l.psi_trigger_window)
            ),
            value: format_duration(l.psi_trigger_stall),
            allowed: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jail_range_of_root_or_past_32_bits_is_refused() {
        let mut a = AgentConfig::default();
        a.offline.jail.uid_base = 0;
        assert!(
            validate(&a)
                .iter()
                .any(|v| v.path == "offline.jail.uid_base")
        );
        a.offline.jail.uid_base = u32::MAX - 10;
        assert!(
            validate(&a)
                .iter()
                .any(|v| v.path == "offline.jail.uid_base")
        );
        a.offline.jail.uid_base = 4_000_000;
        assert!(validate(&a).is_empty());
    }

    #[test]
    fn the_default_agent_config_is_valid() {
        assert_eq!(validate(&AgentConfig::default()), vec![]);
    }
}
