//! `agent.yaml`: the node agent's own configuration (the node, its cgroups, its online services,
//! offline defaults, listeners, scheduler reporting, loop timing, where the policy lives).
//! Every field has a default except the online services' names and selectors.

mod service;
pub(crate) mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use service::{HttpProbe, OnlineService, Selector, SliSource, Slo};

use crate::units::{ByteSize, Cores, duration};

/// The whole `agent.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// This node.
    pub node: NodeConfig,
    /// The cgroup subtree the agent owns.
    pub cgroup: CgroupConfig,
    /// The latency-critical services the agent protects (read, never written).
    pub services: Vec<OnlineService>,
    /// Defaults for offline MicroVMs, and what the node lends to batch work.
    pub offline: OfflineConfig,
    /// The job API.
    pub api: ApiConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Reporting to colo-scheduler.
    pub scheduler: SchedulerConfig,
    /// The QoS loop's timing.
    #[serde(rename = "loop")]
    pub qos_loop: LoopConfig,
    /// Where the policy comes from.
    pub policy: PolicySource,
}

/// The node's identity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node name reported to the scheduler; `null` uses the host name.
    pub name: Option<String>,
}

/// Which cgroup version the agent drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// Detect at start (v2 if `/sys/fs/cgroup` is cgroup2 with the needed controllers).
    #[default]
    Auto,
    /// Legacy or hybrid hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// The agent's cgroup subtree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// The subtree the agent owns, relative to each hierarchy's root: a systemd slice name
    /// (`colo.slice`) or a path (`/colo`). Offline VMs live under `<root>/offline/<job>`.
    pub root: String,
    /// `auto`, `v1` or `v2`.
    pub version: CgroupVersion,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            root: "colo.slice".to_owned(),
            version: CgroupVersion::Auto,
        }
    }
}

/// Offline VM defaults (a job may ask for other sizes) and the node's offline budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Guest kernel (uncompressed ELF `vmlinux` with a PVH entry).
    pub kernel: PathBuf,
    /// The workload guest image.
    pub workload: PathBuf,
    /// vCPUs per VM.
    pub vcpus: u32,
    /// Guest memory per VM.
    pub memory: ByteSize,
    /// Where the agent keeps its job registry, VM logs and disks.
    pub state_dir: PathBuf,
    /// What the node lends to batch work in total.
    pub budget: OfflineBudget,
    /// The `colo-vmm` binary; `null`: next to `colo-agent`, then on `PATH`.
    pub vmm: Option<PathBuf>,
    /// Most vCPUs one job may ask for; `null`: the node's CPU count.
    pub max_vcpus: Option<u32>,
    /// Host memory a VMM needs beyond its guest memory: a job's memory limit is its guest
    /// memory plus this.
    pub memory_overhead: ByteSize,
    /// How long a VMM may take to report that its VM started before the job fails.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub start_timeout: Duration,
    /// After asking a VM to shut down (cancel, evict, deadline), how long before it is killed.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub stop_grace: Duration,
    /// On agent shutdown, stop every job (they end Preempted, reason agent_shutdown) instead of
    /// leaving the VMs running for the next agent to re-adopt.
    pub drain_on_shutdown: bool,
    /// How long a finished job's record and logs are kept.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub retention: Duration,
    /// Directories beneath which a client may name kernels and images (`offline.kernel` and
    /// `offline.workload` are allowed besides). Empty: clients name none.
    pub image_roots: Vec<PathRoot>,
    /// Directories beneath which a client may name disks and volumes. Empty: clients name none.
    pub volume_roots: Vec<PathRoot>,
    /// Most bytes a job's serial console (`serial.log` with `serial.log.1`), its VMM log
    /// (`vmm.log` with `vmm.log.1`) and its VMM output (`vmm.out`) may each hold: the oldest
    /// output is dropped beyond it, and the dropped bytes are counted (a guest decides how much
    /// it prints; without a bound it could fill the state directory).
    pub log_limit: ByteSize,
    /// The container sandbox (an OCI runtime running user programs on the node's kernel).
    pub container: ContainerConfig,
    /// The MicroVM jail: each VMM runs as its own unprivileged uid.
    pub jail: JailConfig,
    /// Linux guests that run a job's program (colo's in-guest agent, over a host channel).
    pub linux: LinuxConfig,
}

/// `offline.linux`: how a Linux-guest job with a program runs: the node's guest kernel boots its
/// guest image (an initramfs whose `/init` is colo's in-guest agent), which runs the program in a
/// root filesystem made from the job's image (a read-only ext4 disk) and reports over a
/// virtio-console channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LinuxConfig {
    /// The guest kernel for jobs that name none; `null`: `offline.kernel`.
    pub kernel: Option<PathBuf>,
    /// The guest image: an initramfs whose `/init` is `colo-guest-init`
    /// (`scripts/build-guest-image.sh` builds one).
    pub initramfs: PathBuf,
    /// The guests' kernel command line.
    pub cmdline: String,
    /// Whether this node's VMM runs guest user space: `auto` finds out (KVM-PVM cannot, and
    /// such jobs are refused at submit); `assume` takes the operator's word (a VMM that is not
    /// colo-vmm, e.g. the test stand-in that runs QEMU).
    pub user_space: UserSpace,
    /// Most bytes of block images made from job images, kept in the state directory; unused
    /// ones are removed, least recently used first.
    pub image_cache: ByteSize,
}

/// `offline.linux.user_space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserSpace {
    /// Detect it from the host's KVM.
    #[default]
    Auto,
    /// The operator says the VMM can run it.
    Assume,
}

impl Default for LinuxConfig {
    fn default() -> Self {
        Self {
            kernel: None,
            initramfs: PathBuf::from("/var/lib/colo/guest/initramfs.cpio"),
            cmdline: "console=ttyS0 panic=-1".into(),
            user_space: UserSpace::Auto,
            image_cache: ByteSize::mib(8 * 1024),
        }
    }
}

/// `offline.jail`: each job's VMM runs in its own mount namespace with an empty root, as a uid
/// and gid of its own from this range, with no capabilities and a seccomp filter per thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JailConfig {
    /// Jail every VMM; `false` runs them with the agent's rights (only for hosts where the
    /// agent cannot create namespaces or change uid).
    pub enabled: bool,
    /// The first uid (and gid) handed to a job's VMM. The range must hold no users or groups
    /// of the host.
    pub uid_base: u32,
    /// How many ids the range holds: at least the most jobs the node runs at once.
    pub uid_count: u32,
}

impl Default for JailConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            uid_base: 4_000_000,
            uid_count: 65_536,
        }
    }
}

/// `offline.container`: how container jobs run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerConfig {
    /// Offer the container sandbox when an OCI runtime is found.
    pub enabled: bool,
    /// The OCI runtime binary; `null`: `runc`, then `crun`, on `PATH`.
    pub runtime: Option<PathBuf>,
    /// Where the runtime keeps its containers' state (its `--root`): under the agent's runtime
    /// directory, which the systemd unit makes writable.
    pub runtime_root: PathBuf,
    /// The per-job monitor binary; `null`: `colo-monitor` next to `colo-agent`, then on `PATH`.
    pub monitor: Option<PathBuf>,
    /// The container ecosystem's seccomp profile (containers-common's `seccomp.json`) applied to
    /// every container; `null`: no seccomp filter.
    pub seccomp_profile: Option<PathBuf>,
    /// Containers share the host's network namespace; `false`: each gets an empty one (loopback
    /// only).
    pub host_network: bool,
    /// Size of each container's writable `/tmp` (a tmpfs, charged to the job's memory limit).
    pub scratch: ByteSize,
    /// Most bytes of unpacked images (OCI layouts, `docker save` tarballs) kept in the state
    /// directory; unused images are removed, least recently used first.
    pub image_store: ByteSize,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            runtime: None,
            runtime_root: PathBuf::from("/run/colo/runc"),
            monitor: None,
            seccomp_profile: Some(PathBuf::from(
                "/usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json",
            )),
            host_network: false,
            scratch: ByteSize::mib(64),
            image_store: ByteSize::mib(8 * 1024),
        }
    }
}

/// A directory beneath which API clients may name files. Paths are resolved beneath it without
/// following symlinks or `..`; the agent opens the file and hands the VMM the descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathRoot {
    /// The directory (absolute).
    pub path: PathBuf,
    /// Block devices beneath it may be named too (never character devices).
    #[serde(default)]
    pub devices: bool,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        Self {
            kernel: PathBuf::from("/var/lib/colo/guest/vmlinux"),
            workload: PathBuf::from("/var/lib/colo/guest/workload"),
            vcpus: 1,
            memory: ByteSize::mib(256),
            state_dir: PathBuf::from("/var/lib/colo"),
            budget: OfflineBudget::default(),
            vmm: None,
            max_vcpus: None,
            memory_overhead: ByteSize::mib(64),
            start_timeout: Duration::from_secs(20),
            stop_grace: Duration::from_secs(5),
            drain_on_shutdown: false,
            retention: Duration::from_secs(24 * 3600),
            image_roots: Vec::new(),
            volume_roots: Vec::new(),
            log_limit: ByteSize::mib(16),
            container: ContainerConfig::default(),
            jail: JailConfig::default(),
            linux: LinuxConfig::default(),
        }
    }
}

/// The most the offline side may use, whatever online leaves free; `null` is the whole node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineBudget {
    /// CPU cores: the ceiling of the offline group's quota.
    pub cpu: Option<Cores>,
    /// Guest memory of all offline VMs together: admission refuses jobs beyond it.
    pub memory: Option<ByteSize>,
}

/// The job API listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The Unix socket.
    pub socket: PathBuf,
    /// Group that owns the socket (mode 0660); `null` leaves it to root only (0600).
    pub socket_group: Option<String>,
    /// An optional TCP listener; it always requires TLS.
    pub tcp: Option<TcpListener>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/colo/agent.sock"),
            socket_group: None,
            tcp: None,
        }
    }
}

/// A TLS-protected TCP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpListener {
    /// Address and port, e.g. `0.0.0.0:7443`.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to (mutual TLS). Required unless
    /// `insecure_any_client` is set.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Accept clients without a certificate (no `client_ca`): any network client gets full
    /// access. An explicit opt-in, warned about at every start.
    #[serde(default)]
    pub insecure_any_client: bool,
    /// Client identities (the certificate subject's common name) allowed to change things:
    /// submit, cancel, report SLIs, reload the policy. Every other client with a valid
    /// certificate may only read (jobs, logs, node status).
    #[serde(default)]
    pub full_access: Vec<String>,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `/metrics` listen address; `null` disables it.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

/// Reporting to colo-scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// The scheduler's gRPC endpoint: `https://host:port` with `tls` (mutual TLS), or
    /// `http://127.0.0.1:port` for a scheduler on this host; `null` reports nowhere.
    pub endpoint: Option<String>,
    /// Time between two reports (a significant change reports at once).
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub report_interval: Duration,
    /// Mutual TLS to an `https://` endpoint; `null` for `http://`.
    pub tls: Option<SchedulerTls>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            report_interval: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// The agent's side of mutual TLS with colo-scheduler. The files are read at start and again
/// at every reconnect, so rotated certificates are picked up without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerTls {
    /// CA bundle (PEM) that colo-scheduler's certificate chains to; the certificate must name
    /// the endpoint's host.
    pub ca: PathBuf,
    /// This agent's certificate (PEM): its CN or a DNS subject alternative name must equal the
    /// node name, or colo-scheduler refuses the reports.
    pub cert: PathBuf,
    /// The private key of `cert` (PEM).
    pub key: PathBuf,
}

/// The QoS loop's timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// Period of the QoS loop: sample, decide, act.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub period: Duration,
    /// Also wake the loop early on PSI triggers (`poll` on `/proc/pressure/*`).
    pub psi_triggers: bool,
    /// PSI trigger window. Below 2 s needs `CAP_SYS_RESOURCE`; kernels before 6.5 need at
    /// least 500 ms.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub psi_trigger_window: Duration,
    /// Stall time within the window that fires a trigger.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub psi_trigger_stall: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_millis(50),
            psi_triggers: true,
            psi_trigger_window: Duration::from_millis(500),
            psi_trigger_stall: Duration::from_millis(50),
        }
    }
}

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySource {
    /// Policy files and directories (`*.yaml` inside, in lexical order), merged in this order,
    /// later values overriding earlier ones field by field. Empty: the built-in default policy.
    pub paths: Vec<PathBuf>,
}

impl Default for PolicySource {
    fn default() -> Self {
        Self {
            paths: vec![
                PathBuf::from("/etc/colo/policy.yaml"),
                PathBuf::from("/etc/colo/policy.d"),
            ],
        }
    }
}
