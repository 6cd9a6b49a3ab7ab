//! Online services: how to find their tasks and, optionally, their SLO.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::duration;

/// A latency-critical service on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnlineService {
    /// A unique name (used in metrics, logs and reports).
    pub name: String,
    /// How to find its tasks.
    pub selector: Selector,
    /// Its latency objective, if it has one.
    #[serde(default)]
    pub slo: Option<Slo>,
}

/// How the agent finds an online service's tasks; exactly one of the forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Selector {
    /// Cgroup paths relative to the hierarchy root (e.g. `/system.slice/nginx.service`).
    Cgroups(Vec<String>),
    /// A systemd unit (its cgroup is looked up).
    SystemdUnit(String),
    /// A file holding the main pid (its cgroup is looked up).
    PidFile(PathBuf),
}

/// A service-level objective on p99 latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The p99 latency target.
    #[serde(with = "duration")]
    #[schemars(with = "duration::Schema")]
    pub p99: Duration,
    /// Where the measured latency comes from.
    pub sli: SliSource,
}

/// The source of a service's measured latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SliSource {
    /// The agent probes an HTTP URL and measures the latency itself.
    Probe(HttpProbe),
    /// The service pushes its own p99 through the agent API (`ReportSli`).
    Pushed,
}

/// An HTTP latency probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// `http://` URL to GET.
    pub url: String,
    /// Time between probes.
    #[serde(with = "duration", default = "default_probe_interval")]
    #[schemars(with = "duration::Schema")]
    pub interval: Duration,
    /// A probe slower than this counts as this slow and as failed.
    #[serde(with = "duration", default = "default_probe_timeout")]
    #[schemars(with = "duration::Schema")]
    pub timeout: Duration,
}

fn default_probe_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_probe_timeout() -> Duration {
    Duration::from_secs(1)
}
