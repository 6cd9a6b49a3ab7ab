//! The agent's runtime settings, resolved from `agent.yaml`.
//!
//! TEMPORARY: until colo-config's `AgentConfig` is on main, this module reads the same YAML
//! shape itself (the fields the agent needs, same names); then `from_file` becomes a
//! conversion from `colo_config::AgentConfig`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cgroup::{CgroupSettings, CgroupVersion};
use crate::job::{Budget, ManagerConfig};

/// Errors loading the settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid agent.yaml.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSettings {
    /// Address and port.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA for client certificates (None = any client).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct File {
    node: NodeFile,
    cgroup: CgroupFile,
    offline: OfflineFile,
    api: ApiFile,
    metrics: MetricsFile,
    policy: PolicyFile,
    // Sections the agent reads elsewhere (QoS loop, reporter) are accepted here.
    services: serde::de::IgnoredAny,
    scheduler: serde::de::IgnoredAny,
    #[serde(rename = "loop")]
    qos_loop: serde::de::IgnoredAny,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct NodeFile {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CgroupFile {
    root: String,
    version: String,
}

impl Default for CgroupFile {
    fn default() -> Self {
        Self {
            root: "colo.slice".into(),
            version: "auto".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OfflineFile {
    kernel: PathBuf,
    workload: Option<PathBuf>,
    vmm_binary: Option<PathBuf>,
    vcpus: u32,
    max_vcpus: Option<u32>,
    memory: String,
    memory_overhead: String,
    state_dir: PathBuf,
    budget: BudgetFile,
    stop_grace: String,
    start_timeout: String,
    drain_on_shutdown: bool,
    retention: String,
}

impl Default for OfflineFile {
    fn default() -> Self {
        Self {
            kernel: "/var/lib/colo/guest/vmlinux".into(),
            workload: None,
            vmm_binary: None,
            vcpus: 1,
            max_vcpus: None,
            memory: "256MiB".into(),
            memory_overhead: "64MiB".into(),
            state_dir: "/var/lib/colo".into(),
            budget: BudgetFile::default(),
            stop_grace: "5s".into(),
            start_timeout: "20s".into(),
            drain_on_shutdown: false,
            retention: "24h".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BudgetFile {
    cpu: Option<f64>,
    memory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ApiFile {
    socket: PathBuf,
    socket_group: Option<String>,
    tcp: Option<TcpSettings>,
}

impl Default for ApiFile {
    fn default() -> Self {
        Self {
            socket: "/run/colo/agent.sock".into(),
            socket_group: None,
            tcp: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct MetricsFile {
    listen: Option<SocketAddr>,
}

impl Default for MetricsFile {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PolicyFile {
    paths: Vec<PathBuf>,
}

impl Default for PolicyFile {
    fn default() -> Self {
        Self {
            paths: vec!["/etc/colo/policy.yaml".into(), "/etc/colo/policy.d".into()],
        }
    }
}

/// Parses `256MiB`, `1GiB`, `512M`, `1024` (bytes).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
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
    /// Loads `agent.yaml` (a missing file means every default).
    pub fn load(path: &Path, host: HostFacts) -> Result<Self, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(SettingsError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let invalid = |message: String| SettingsError::Invalid {
            path: path.into(),
            message,
        };
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?
        };
        let dur = |field: &str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|e| invalid(format!("{field}: {e}, got {v:?} (e.g. 5s, 500ms)")))
        };
        let bytes = |field: &str, v: &str| {
            parse_bytes(v)
                .ok_or_else(|| invalid(format!("{field}: not a size, got {v:?} (e.g. 256MiB)")))
        };
        let version = match file.cgroup.version.as_str() {
            "auto" => None,
            "v1" => Some(CgroupVersion::V1),
            "v2" => Some(CgroupVersion::V2),
            other => {
                return Err(invalid(format!(
                    "cgroup.version: must be auto, v1 or v2, got {other:?}"
                )));
            }
        };
        let cgroup = CgroupSettings {
            version,
            root: Some(PathBuf::from(&file.cgroup.root)),
            ..Default::default()
        };
        let o = &file.offline;
        let memory_mib = bytes("offline.memory", &o.memory)? >> 20;
        let budget = Budget {
            cpu_millicores: o
                .budget
                .cpu
                .map_or(u64::from(host.cpus) * 1000, |c| (c * 1000.0) as u64),
            memory_bytes: match &o.budget.memory {
                Some(m) => bytes("offline.budget.memory", m)?,
                None => host.memory_bytes,
            },
        };
        let workload = match &o.workload {
            Some(p) => p.clone(),
            None => PathBuf::from("/var/lib/colo/guest/workload"),
        };
        let vmm_binary = crate::vmm::find_binary(o.vmm_binary.as_deref())
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/colo-vmm"));
        let mut manager = ManagerConfig::new(vmm_binary, workload, budget);
        manager.limits.default_vcpus = o.vcpus.max(1);
        manager.limits.max_vcpus = o.max_vcpus.unwrap_or(host.cpus.max(o.vcpus));
        manager.limits.default_memory_mib = memory_mib.max(1);
        manager.memory_overhead_mib = bytes("offline.memory_overhead", &o.memory_overhead)? >> 20;
        manager.stop_grace = dur("offline.stop_grace", &o.stop_grace)?;
        manager.start_timeout = dur("offline.start_timeout", &o.start_timeout)?;
        manager.drain_on_shutdown = o.drain_on_shutdown;
        manager.finished_retention = dur("offline.retention", &o.retention)?;
        let node_name = file.node.name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into())
        });
        Ok(Self {
            node_name,
            socket: file.api.socket,
            socket_group: file.api.socket_group,
            tcp: file.api.tcp,
            metrics_listen: file.metrics.listen,
            state_dir: o.state_dir.clone(),
            cgroup,
            manager,
            policy_paths: file.policy.paths,
        })
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
            CgroupVersion::V1 => Ok(PathBuf::from(text.as_ref())),
            CgroupVersion::V2 => {
                let own = own_v2.ok_or("cannot read the agent's own cgroup")?;
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
        assert_eq!(s.manager.limits.default_memory_mib, 256);
        std::fs::write(
            &p,
            "cgroup:\n  root: /colo-test\n  version: v1\noffline:\n  state_dir: /tmp/x\n  memory: 32MiB\n  budget:\n    cpu: 1.5\n    memory: 1GiB\n  stop_grace: 2s\napi:\n  socket: /tmp/a.sock\nmetrics:\n  listen: null\nservices: []\n",
        )
        .unwrap();
        let s = AgentSettings::load(&p, host()).unwrap();
        assert_eq!(s.manager.budget.cpu_millicores, 1500);
        assert_eq!(s.manager.budget.memory_bytes, 1 << 30);
        assert_eq!(s.manager.stop_grace, Duration::from_secs(2));
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.cgroup.version, Some(CgroupVersion::V1));
        std::fs::write(&p, "offline:\n  memory: lots\n").unwrap();
        let e = AgentSettings::load(&p, host()).unwrap_err().to_string();
        assert!(e.contains("offline.memory"), "{e}");
        std::fs::write(&p, "offline:\n  colour: red\n").unwrap();
        assert!(AgentSettings::load(&p, host()).is_err());
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
        let e = r(
            "colo.slice",
            CgroupVersion::V2,
            Some("system.slice/x.service"),
        )
        .unwrap_err();
        assert!(e.contains("Slice=colo.slice"), "{e}");
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("x"), None);
    }
}
