//! The `k8s.io/kube-scheduler/extender/v1` wire types, and the parts of `k8s.io/api/core/v1`
//! (Pod, NodeList) that colo reads.
//!
//! The extender structs have no json tags in Go, so Go encodes their fields under the Go field
//! names (`NodeNames`, `FailedNodes`, `Host`, `Score`, ...) and never omits one; nil maps, slices
//! and pointers encode as `null`. Core v1 types carry camelCase json tags (`metadata`, `items`).
//! Input is decoded with Go's case-insensitive key matching ([`super::decode`]). Full `Node`
//! objects are never re-encoded: colo passes them through byte for byte as raw JSON.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::de::MapAccess;
use serde_json::value::RawValue;

use super::decode::{GoField, GoStruct, Text, go_deserialize};
use super::gojson::GoRaw;
use super::quantity::Quantity;

/// Implements [`GoStruct`]: type, Go field names, and the Rust field each fills.
macro_rules! go_fields {
    ($t:ty, $name:literal, { $($key:literal => $field:ident),+ $(,)? }) => {
        impl<'de> GoStruct<'de> for $t {
            const NAME: &'static str = $name;
            const FIELDS: &'static [&'static str] = &[$($key),+];
            fn set<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
                let mut n = 0usize;
                $(
                    if i == n {
                        self.$field = GoField::decode(map)?;
                        return Ok(());
                    }
                    n += 1;
                )+
                let _ = n;
                map.next_value::<serde::de::IgnoredAny>().map(|_| ())
            }
        }
    };
}

// ----- input: core v1 -----

/// `metav1.ObjectMeta`, the fields colo reads.
#[derive(Debug, Default)]
pub struct ObjectMeta {
    /// `name`.
    pub name: Option<String>,
    /// `namespace`.
    pub namespace: Option<String>,
    /// `uid`.
    pub uid: Option<String>,
    /// `labels` (map keys are case-sensitive, as in Go).
    pub labels: Option<HashMap<String, String>>,
}
go_fields!(ObjectMeta, "ObjectMeta", {
    "name" => name, "namespace" => namespace, "uid" => uid, "labels" => labels,
});
go_deserialize!(ObjectMeta);

/// `v1.ResourceRequirements`.
#[derive(Debug, Default)]
pub struct ResourceRequirements {
    /// `limits`.
    pub limits: Option<HashMap<String, Quantity>>,
    /// `requests`.
    pub requests: Option<HashMap<String, Quantity>>,
}
go_fields!(ResourceRequirements, "ResourceRequirements", {
    "limits" => limits, "requests" => requests,
});
go_deserialize!(ResourceRequirements);

/// `v1.Container`, the fields colo reads.
#[derive(Debug, Default)]
pub struct Container {
    /// `name`.
    pub name: Option<String>,
    /// `resources`.
    pub resources: Option<ResourceRequirements>,
}
go_fields!(Container, "Container", { "name" => name, "resources" => resources });
go_deserialize!(Container);

/// `v1.PodSpec`, the fields colo reads.
#[derive(Debug, Default)]
pub struct PodSpec {
    /// `priorityClassName`.
    pub priority_class_name: Option<String>,
    /// `containers`.
    pub containers: Option<Vec<Option<Container>>>,
    /// `initContainers`.
    pub init_containers: Option<Vec<Option<Container>>>,
    /// `overhead` (RuntimeClass pod overhead).
    pub overhead: Option<HashMap<String, Quantity>>,
}
go_fields!(PodSpec, "PodSpec", {
    "priorityClassName" => priority_class_name,
    "containers" => containers,
    "initContainers" => init_containers,
    "overhead" => overhead,
});
go_deserialize!(PodSpec);

/// `v1.Pod`, the fields colo reads.
#[derive(Debug, Default)]
pub struct Pod {
    /// `metadata`.
    pub metadata: Option<ObjectMeta>,
    /// `spec`.
    pub spec: Option<PodSpec>,
}
go_fields!(Pod, "Pod", { "metadata" => metadata, "spec" => spec });
go_deserialize!(Pod);

impl Pod {
    /// `namespace/name` for messages.
    #[must_use]
    pub fn display_name(&self) -> String {
        let m = self.metadata.as_ref();
        let ns = m.and_then(|m| m.namespace.as_deref()).unwrap_or("");
        let name = m.and_then(|m| m.name.as_deref()).unwrap_or("<unnamed>");
        if ns.is_empty() {
            name.to_owned()
        } else {
            format!("{ns}/{name}")
        }
    }

    /// `metadata.uid`, or "".
    #[must_use]
    pub fn uid(&self) -> &str {
        self.metadata
            .as_ref()
            .and_then(|m| m.uid.as_deref())
            .unwrap_or("")
    }
}

/// A `v1.Node` kept as raw JSON, with its name read out.
#[derive(Debug)]
pub struct RawNode<'a> {
    /// The node exactly as received.
    pub raw: &'a RawValue,
}

#[derive(Debug, Default)]
struct NameOnlyMeta<'a> {
    name: Option<Text<'a>>,
}
go_fields!(NameOnlyMeta<'de>, "ObjectMeta", { "name" => name });
go_deserialize!(NameOnlyMeta<'de>);

#[derive(Debug, Default)]
struct NameOnlyNode<'a> {
    metadata: Option<NameOnlyMeta<'a>>,
}
go_fields!(NameOnlyNode<'de>, "Node", { "metadata" => metadata });
go_deserialize!(NameOnlyNode<'de>);

impl<'a> RawNode<'a> {
    /// `metadata.name`, decoded from the raw node.
    ///
    /// # Errors
    /// When the node is not an object or has no name.
    pub fn name(&self) -> Result<Text<'a>, String> {
        let n: NameOnlyNode<'a> = serde_json::from_str(self.raw.get())
            .map_err(|e| format!("a node in Nodes.items is not a v1.Node: {e}"))?;
        n.metadata
            .and_then(|m| m.name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| "a node in Nodes.items has no metadata.name".to_owned())
    }
}

impl<'de> serde::Deserialize<'de> for RawNode<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|raw| RawNode { raw })
    }
}

/// `v1.NodeList`: list metadata passed through raw, items raw.
#[derive(Debug, Default)]
pub struct NodeList<'a> {
    /// `kind`.
    pub kind: Option<Text<'a>>,
    /// `apiVersion`.
    pub api_version: Option<Text<'a>>,
    /// `metadata` (ListMeta), raw.
    pub metadata: Option<&'a RawValue>,
    /// `items`.
    pub items: Option<Vec<RawNode<'a>>>,
}
go_fields!(NodeList<'de>, "NodeList", {
    "kind" => kind, "apiVersion" => api_version, "metadata" => metadata, "items" => items,
});
go_deserialize!(NodeList<'de>);

// ----- input: extender v1 -----

/// `ExtenderArgs`: the body of filter and prioritize calls.
#[derive(Debug, Default)]
pub struct ExtenderArgs<'a> {
    /// `Pod`: the pod being scheduled.
    pub pod: Option<Pod>,
    /// `Nodes`: candidate nodes (when the extender is not `nodeCacheCapable`).
    pub nodes: Option<NodeList<'a>>,
    /// `NodeNames`: candidate node names (when it is `nodeCacheCapable`).
    pub node_names: Option<Vec<Text<'a>>>,
}
go_fields!(ExtenderArgs<'de>, "ExtenderArgs", {
    "Pod" => pod, "Nodes" => nodes, "NodeNames" => node_names,
});
go_deserialize!(ExtenderArgs<'de>);

/// `MetaPod`: a pod by UID.
#[derive(Debug, Default, Serialize)]
pub struct MetaPod {
    /// `UID`.
    #[serde(rename = "UID")]
    pub uid: String,
}
go_fields!(MetaPod, "MetaPod", { "UID" => uid });
go_deserialize!(MetaPod);

/// `MetaVictims`: victims by UID.
#[derive(Debug, Default, Serialize)]
pub struct MetaVictims {
    /// `Pods`.
    #[serde(rename = "Pods")]
    pub pods: Option<Vec<Option<MetaPod>>>,
    /// `NumPDBViolations`.
    #[serde(rename = "NumPDBViolations")]
    pub num_pdb_violations: i64,
}
go_fields!(MetaVictims, "MetaVictims", {
    "Pods" => pods, "NumPDBViolations" => num_pdb_violations,
});
go_deserialize!(MetaVictims);

/// `Victims`: victims as full pods.
#[derive(Debug, Default)]
pub struct Victims {
    /// `Pods`.
    pub pods: Option<Vec<Option<Pod>>>,
    /// `NumPDBViolations`.
    pub num_pdb_violations: Option<i64>,
}
go_fields!(Victims, "Victims", { "Pods" => pods, "NumPDBViolations" => num_pdb_violations });
go_deserialize!(Victims);

/// `ExtenderPreemptionArgs`: the body of preempt calls.
#[derive(Debug, Default)]
pub struct ExtenderPreemptionArgs {
    /// `Pod`.
    pub pod: Option<Pod>,
    /// `NodeNameToVictims` (when not `nodeCacheCapable`).
    pub node_name_to_victims: Option<BTreeMap<String, Option<Victims>>>,
    /// `NodeNameToMetaVictims` (when `nodeCacheCapable`).
    pub node_name_to_meta_victims: Option<BTreeMap<String, Option<MetaVictims>>>,
}
go_fields!(ExtenderPreemptionArgs, "ExtenderPreemptionArgs", {
    "Pod" => pod,
    "NodeNameToVictims" => node_name_to_victims,
    "NodeNameToMetaVictims" => node_name_to_meta_victims,
});
go_deserialize!(ExtenderPreemptionArgs);

// ----- output -----

/// `v1.NodeList` as Go encodes it: `kind` and `apiVersion` omitted when empty, `metadata` always
/// (a struct is never omitted), `items`.
#[derive(Debug, Serialize)]
pub(crate) struct NodeListOut<'a> {
    /// `kind`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    /// `apiVersion`.
    #[serde(rename = "apiVersion", skip_serializing_if = "str::is_empty")]
    pub api_version: &'a str,
    /// `metadata`, passed through (or `{}`).
    pub metadata: GoRaw<'a>,
    /// `items`, passed through.
    pub items: Vec<GoRaw<'a>>,
}

/// `ExtenderFilterResult`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ExtenderFilterResult<'a> {
    /// `Nodes`: the passing nodes (full-node mode), else null.
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeListOut<'a>>,
    /// `NodeNames`: the passing node names (`nodeCacheCapable` mode), else null.
    #[serde(rename = "NodeNames")]
    pub node_names: Option<Vec<&'a str>>,
    /// `FailedNodes`: node → reason, where preemption may help.
    #[serde(rename = "FailedNodes")]
    pub failed_nodes: Option<SortedMap<'a>>,
    /// `FailedAndUnresolvableNodes`: node → reason, where preemption cannot help.
    #[serde(rename = "FailedAndUnresolvableNodes")]
    pub failed_and_unresolvable_nodes: Option<SortedMap<'a>>,
    /// `Error`: why the request could not be served ("" when it was).
    #[serde(rename = "Error")]
    pub error: String,
}

/// A Go `map[string]string` built from a list: encoded with keys in byte order (as Go sorts
/// them) and each key once. Cheaper than a `BTreeMap` for thousands of entries.
#[derive(Debug, Default)]
pub(crate) struct SortedMap<'a>(Vec<(&'a str, &'static str)>);

impl<'a> SortedMap<'a> {
    /// Adds an entry (order does not matter).
    pub(crate) fn insert(&mut self, key: &'a str, value: &'static str) {
        self.0.push((key, value));
    }

    /// Number of entries (a key added twice counts twice).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts by key and keeps the last value of a repeated key, as a Go map would.
    pub(crate) fn finish(mut self) -> Self {
        // Stable sort: entries of one key stay in insertion order, so the last one wins.
        self.0.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<(&'a str, &'static str)> = Vec::with_capacity(self.0.len());
        for (k, v) in self.0 {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        Self(out)
    }
}

impl Serialize for SortedMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// `HostPriority`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct HostPriority<'a> {
    /// `Host`.
    #[serde(rename = "Host")]
    pub host: &'a str,
    /// `Score`, 0..10.
    #[serde(rename = "Score")]
    pub score: i64,
}

/// `ExtenderPreemptionResult`.
#[derive(Debug, Default, Serialize)]
pub struct ExtenderPreemptionResult {
    /// `NodeNameToMetaVictims`: the nodes where preemption helps, with their victims.
    #[serde(rename = "NodeNameToMetaVictims")]
    pub node_name_to_meta_victims: Option<BTreeMap<String, MetaVictims>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_map_encodes_like_a_go_map() {
        let mut m = SortedMap::default();
        m.insert("node-b", "first");
        m.insert("node-a", "x");
        m.insert("node-b", "second");
        m.insert("Node-c", "y");
        assert_eq!(m.len(), 4);
        let m = m.finish();
        assert_eq!(
            super::super::gojson::to_vec(&m),
            br#"{"Node-c":"y","node-a":"x","node-b":"second"}"#
        );
        assert_eq!(
            super::super::gojson::to_vec(&SortedMap::default().finish()),
            b"{}"
        );
    }
}
