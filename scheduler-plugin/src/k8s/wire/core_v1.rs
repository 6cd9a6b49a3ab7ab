//! The parts of `k8s.io/api/core/v1` colo reads: a Pod's requests and class, a NodeList's
//! nodes (passed through as raw JSON, their names read).

use std::collections::HashMap;

use serde::de::MapAccess;
use serde_json::value::RawValue;

use super::super::quantity::Quantity;
use crate::gojson::{GoField, GoStruct, Text, go_deserialize};

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
