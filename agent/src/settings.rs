//! The agent's runtime settings, resolved from `agent.yaml` (colo-config's `AgentConfig`) and
//! the host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use colo_config::AgentConfig;

use crate::host::cgroup::{CgroupSettings, CgroupVersion};
use crate::jobs::{Budget, ManagerConfig};
pub use crate::serve::server::TcpSettings;

/// Errors loading the settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// agent.yaml is missing, unreadable or invalid (each error names file:line:col).
    #[error("{0}")]
    Config(#[from] colo_config::ConfigErrors),
}

/// Everything the daemon needs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Node name.
    pub node_name: String,
    /// The Unix socket of the API.
    pub socket: PathBuf,
    /// Group owning the socket (mode 0660); None: 0600.
    pub socket_group: Option<String>,
    /// Optional TCP+TLS listener.
    pub tcp: Option<TcpSettings>,
    /// `/metrics` listen address.
    pub metrics_listen: Option<SocketAddr>,
    /// State directory.
    pub state_dir: PathBuf,
    /// cgroup setup.
    pub cgroup: CgroupSettings,
    /// Job manager settings.
    pub manager: ManagerConfig,
    /// Policy files and directories.
    pub policy_paths: Vec<PathBuf>,
    /// Online services named in agent.yaml.
    pub services: Vec<String>,
    /// The whole configuration, for the components that read their own sections (QoS loop,
    /// reporter).
    pub config: AgentConfig,
}

/// Host facts used for defaults.
#[derive(Debug, Clone, Copy)]
pub struct HostFacts {
    /// Online CPUs.
    pub cpus: u32,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
}

impl HostFacts {
    /// Reads them from the running system.
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024);
        Self { cpus, memory_bytes }
    }
}

impl AgentSettings {
    /// Loads `agent.yaml`; a missing file means every default.
    pub fn load(path: &Path, host: HostFacts) -> Result<Self, SettingsError> {
        let config = if path.exists() {
            colo_config::load_agent(path)?
        } else {
            tracing::info!(path = %path.display(), "no agent.yaml; using the defaults");
            AgentConfig::default()
        };
        Ok(Self::from_config(config, host))
    }

    /// Resolves a configuration against the host.
    pub fn from_config(config: AgentConfig, host: HostFacts) -> Self {
        let cgroup = CgroupSettings {
            version: config.cgroup.version,
            root: Some(PathBuf::from(&config.cgroup.root)),
            ..Default::default()
        };
        let o = &config.offline;
        let budget = Budget {
            cpu_millicores: o.budget.cpu.map_or(u64::from(host.cpus) * 1000, |c| {
                (c.get() * 1000.0).round() as u64
            }),
            memory_bytes: o.budget.memory.map_or(u64::MAX, |m| m.bytes()),
        };
        let vmm_binary = crate::jobs::runtime::find_binary("colo-vmm", o.vmm.as_deref())
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/colo-vmm"));
        // The workload guest is embedded in colo-vmm's library: when offline.workload is not
        // installed, the agent writes out its own copy.
        let workload = if o.workload.is_file() {
            o.workload.clone()
        } else {
            match colo_vmm::workload_guest_path() {
                Ok(p) => {
                    tracing::info!(configured = %o.workload.display(), using = %p.display(),
                        "offline.workload not installed; using the embedded workload guest");
                    p
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no workload guest: workload jobs will fail");
                    o.workload.clone()
                }
            }
        };
        let mut manager = ManagerConfig::new(vmm_binary, workload, budget);
        manager.limits.default_vcpus = o.vcpus.max(1);
        manager.limits.max_vcpus = o.max_vcpus.unwrap_or(host.cpus.max(o.vcpus));
        manager.limits.default_memory_mib = (o.memory.bytes() >> 20).max(1);
        let root = |r: &colo_config::agent::PathRoot| crate::jobs::paths::Root {
            dir: r.path.clone(),
            devices: r.devices,
        };
        manager.limits.paths = crate::jobs::paths::PathRoots {
            images: o.image_roots.iter().map(root).collect(),
            volumes: o.volume_roots.iter().map(root).collect(),
            operator_files: vec![o.kernel.clone(), o.workload.clone()],
        };
        manager.memory_overhead_mib = o.memory_overhead.bytes() >> 20;
        manager.stop_grace = o.stop_grace;
        manager.start_timeout = o.start_timeout;
        manager.drain_on_shutdown = o.drain_on_shutdown;
        manager.finished_retention = o.retention;
        manager.log_limit = o.log_limit.bytes();
        manager.jail = o.jail.enabled.then_some(crate::jobs::config::JailRange {
            base: o.jail.uid_base,
            count: o.jail.uid_count,
        });
        // The container sandbox is detected when the agent starts (it runs the runtime and
        // opens the image store), not when a configuration is only read or checked.
        manager.containers = Err("not detected yet".into());
        // Lower case, as the kubelet names its node after the host.
        let node_name = config.node.name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_ascii_lowercase())
                .unwrap_or_else(|_| "localhost".into())
        });
        Self {
            node_name,
            socket: config.api.socket.clone(),
            socket_group: config.api.socket_group.clone(),
            tcp: config.api.tcp.as_ref().map(|t| TcpSettings {
                listen: t.listen,
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
                insecure_any_client: t.insecure_any_client,
                full_access: t.full_access.clone(),
            }),
            metrics_listen: config.metrics.listen,
            state_dir: o.state_dir.clone(),
            cgroup,
            manager,
            policy_paths: config.policy.paths.clone(),
            services: config.services.iter().map(|s| s.name.clone()).collect(),
            config,
        }
    }

    /// Resolves `cgroup.root` for the detected version: a path starting with `/` is taken as
    /// is; a slice name (`colo.slice`) means, on v2, the agent's own delegated cgroup (which
    /// must lie inside that slice: set `Slice=` in the unit), on v1 `/<name>`.
    pub fn resolve_cgroup_root(
        root: &Path,
        version: CgroupVersion,
        own_v2: Option<&Path>,
    ) -> Result<PathBuf, String> {
        let text = root.to_string_lossy();
        if text.starts_with('/') {
            return Ok(PathBuf::from(text.trim_start_matches('/')));
        }
        match version {
            CgroupVersion::V1 | CgroupVersion::Auto => Ok(PathBuf::from(text.as_ref())),
            CgroupVersion::V2 => {
                let own = own_v2.ok_or("cannot read the agent's own cgroup")?;
                // Under `DelegateSubgroup=agent` systemd starts the agent in <unit>/agent
                // already: the subtree is the unit's cgroup.
                let own = if own.file_name().is_some_and(|n| n == "agent") {
                    own.parent().unwrap_or(own)
                } else {
                    own
                };
                if own.starts_with(text.as_ref()) && own != Path::new(text.as_ref()) {
                    Ok(own.to_path_buf())
                } else {
                    Err(format!(
                        "cgroup.root {text:?} is a slice, so the agent must run in a delegated \
                         cgroup inside it (systemd: Slice={text} and Delegate=yes), but it runs \
                         in /{}; fix the unit or give cgroup.root as a path (/colo)",
                        own.display()
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn host() -> HostFacts {
        HostFacts {
            cpus: 4,
            memory_bytes: 8 << 30,
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.yaml");
        let s = AgentSettings::load(&p, host()).unwrap();
        assert_eq!(s.socket, PathBuf::from("/run/colo/agent.sock"));
        assert_eq!(s.manager.budget.cpu_millicores, 4000);
        assert_eq!(s.manager.budget.memory_bytes, u64::MAX);
        assert_eq!(s.manager.limits.default_memory_mib, 256);
        assert_eq!(s.manager.limits.max_vcpus, 4);
        std::fs::write(
            &p,
            "cgroup:\n  root: /colo-test\n  version: v1\noffline:\n  state_dir: /tmp/x\n  memory: 32MiB\n  budget:\n    cpu: 1.5\n    memory: 1GiB\n  stop_grace: 2s\n  log_limit: 1MiB\napi:\n  socket: /tmp/a.sock\nmetrics:\n  listen: null\n",
        )
        .unwrap();
        let s = AgentSettings::load(&p, host()).unwrap();
        assert_eq!(s.manager.budget.cpu_millicores, 1500);
        assert_eq!(s.manager.budget.memory_bytes, 1 << 30);
        assert_eq!(s.manager.stop_grace, Duration::from_secs(2));
        assert_eq!(s.manager.log_limit, 1 << 20);
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.cgroup.version, CgroupVersion::V1);
        std::fs::write(&p, "offline:\n  memory: lots\n").unwrap();
        let e = AgentSettings::load(&p, host()).unwrap_err().to_string();
        assert!(e.contains("agent.yaml:2"), "{e}");
    }

    #[test]
    fn cgroup_roots() {
        let r = |root: &str, v, own: Option<&str>| {
            AgentSettings::resolve_cgroup_root(Path::new(root), v, own.map(Path::new))
        };
        assert_eq!(
            r("/colo", CgroupVersion::V2, None).unwrap(),
            PathBuf::from("colo")
        );
        assert_eq!(
            r("colo.slice", CgroupVersion::V1, None).unwrap(),
            PathBuf::from("colo.slice")
        );
        assert_eq!(
            r(
                "colo.slice",
                CgroupVersion::V2,
                Some("colo.slice/colo-agent.service")
            )
            .unwrap(),
            PathBuf::from("colo.slice/colo-agent.service")
        );
        assert_eq!(
            r(
                "colo.slice",
                CgroupVersion::V2,
                Some("colo.slice/u.service/agent")
            )
            .unwrap(),
            PathBuf::from("colo.slice/u.service")
        );
        let e = r(
            "colo.slice",
            CgroupVersion::V2,
            Some("system.slice/x.service"),
        )
        .unwrap_err();
        assert!(e.contains("Slice=colo.slice"), "{e}");
    }
}
