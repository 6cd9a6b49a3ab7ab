//! The extender's request bodies (`k8s.io/kube-scheduler/extender/v1`): filter and
//! prioritize take `ExtenderArgs`, preempt takes `ExtenderPreemptionArgs`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::MapAccess;
use serde_json::value::RawValue;

use super::core_v1::{NodeList, Pod};
use crate::gojson::{
    GoField, GoStruct, NameList, Text, go_deserialize, go_object, string_array, string_array_at,
    value_at,
};

/// `ExtenderArgs`: the body of filter and prioritize calls.
#[derive(Debug, Default)]
pub struct ExtenderArgs<'a> {
    /// `Pod`: the pod being scheduled.
    pub pod: Option<Pod>,
    /// `Nodes`: candidate nodes (when the extender is not `nodeCacheCapable`).
    pub nodes: Option<NodeList<'a>>,
    /// `NodeNames`: candidate node names (when it is `nodeCacheCapable`).
    pub node_names: Option<NameList<'a>>,
}
impl<'de> GoStruct<'de> for ExtenderArgs<'de> {
    const NAME: &'static str = "ExtenderArgs";
    const FIELDS: &'static [&'static str] = &["Pod", "Nodes", "NodeNames"];
    fn set<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.pod = GoField::decode(map)?,
            1 => self.nodes = GoField::decode(map)?,
            _ => {
                // Thousands of names: serde_json checks the array once as raw JSON, then the
                // names are cut out of it without a visitor call each.
                let raw: Option<&'de RawValue> = map.next_value()?;
                self.node_names = raw
                    .map(|r| string_array(r.get()))
                    .transpose()
                    .map_err(|e| serde::de::Error::custom(format!("NodeNames: {e}")))?;
            }
        }
        Ok(())
    }
}
go_deserialize!(ExtenderArgs<'de>);

impl<'de> ExtenderArgs<'de> {
    /// Decodes a request body: the same result as `serde_json::from_str` (unit-tested against
    /// it), but `NodeNames` is read in one pass instead of serde_json checking it as raw JSON
    /// first and the names being cut out second.
    ///
    /// # Errors
    /// When `body` is not an `ExtenderArgs` (the message says where).
    pub fn decode(body: &'de str) -> Result<Self, String> {
        go_object(body, |args: &mut Self, field, body, at| match field {
            0 => value_at(body, at).map(|(v, end)| {
                args.pod = v;
                end
            }),
            1 => value_at(body, at).map(|(v, end)| {
                args.nodes = v;
                end
            }),
            _ if body.as_bytes().get(at) == Some(&b'[') => {
                string_array_at(body, at).map(|(v, end)| {
                    args.node_names = Some(v);
                    end
                })
            }
            // `null`, or not an array (then serde_json's error message).
            _ => value_at::<Option<Vec<Text<'de>>>>(body, at).map(|(v, end)| {
                args.node_names = v.map(|v| NameList::from_names(v.iter().map(|t| &**t)));
                end
            }),
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_matches_serde_json() {
        let pod = r#"{"metadata":{"name":"p","uid":"u1","labels":{"a":"b"}},"spec":{"priorityClassName":"batch"}}"#;
        let node = r#"{"metadata":{"name":"n1"},"status":{}}"#;
        let bodies = [
            format!(r#"{{"Pod":{pod},"NodeNames":["a","b\u0026c",""],"Nodes":null}}"#),
            format!(r#" {{ "pod" : {pod} , "nodenames" : [ "x" , "y" ] }} "#),
            r#"{"POD":null,"NodeNames":null}"#.to_owned(),
            format!(r#"{{"Pod":{pod},"Nodes":{{"kind":"NodeList","items":[{node},{node}]}}}}"#),
            r#"{"other":[1,{"NodeNames":["z"]}],"NodeNames":["a"],"NodeNames":["b"]}"#.to_owned(),
            r#"{"NodeNames":["a"],"NodeNames":null}"#.to_owned(),
            r#"{"NodeName\u0073":["esc"],"pod":{}}"#.to_owned(),
            "{}".to_owned(),
        ];
        let view = |a: &ExtenderArgs<'_>| {
            (
                a.pod.as_ref().map(|p| {
                    (
                        p.uid().to_owned(),
                        p.spec.as_ref().and_then(|s| s.priority_class_name.clone()),
                    )
                }),
                a.node_names
                    .as_ref()
                    .map(|n| n.iter().map(|t| t.to_string()).collect::<Vec<_>>()),
                a.nodes.as_ref().map(|l| {
                    (
                        l.kind.as_deref().map(str::to_owned),
                        l.items
                            .iter()
                            .flatten()
                            .map(|n| n.raw.get().to_owned())
                            .collect::<Vec<_>>(),
                    )
                }),
            )
        };
        for body in &bodies {
            let want: ExtenderArgs<'_> = serde_json::from_str(body).unwrap();
            let got = ExtenderArgs::decode(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(view(&got), view(&want), "{body}");
        }
        for bad in [
            "",
            "[]",
            r#"{"Pod":}"#,
            r#"{"NodeNames":["a",1]}"#,
            r#"{"NodeNames":"a"}"#,
            r#"{"NodeNames":["a"]"#,
            r#"{"NodeNames":["a"]} x"#,
            r#"{"NodeNames":["a"],}"#,
            "{\"NodeNames\":[\"a\u{1}\"]}",
            r#"{"Pod":{"metadata":5}}"#,
        ] {
            assert!(
                serde_json::from_str::<ExtenderArgs<'_>>(bad).is_err(),
                "serde: {bad}"
            );
            assert!(ExtenderArgs::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_names_of_any_shape_decode_in_extender_args() {
        let names = |body: &str| {
            serde_json::from_str::<ExtenderArgs<'_>>(body).map(|a| {
                a.node_names
                    .map(|v| v.iter().map(|t| t.to_string()).collect::<Vec<_>>())
            })
        };
        assert_eq!(
            names(r#"{"nodenames":["a","b\u0026"]}"#).unwrap(),
            Some(vec!["a".to_owned(), "b&".to_owned()])
        );
        assert_eq!(names(r#"{"NodeNames":null}"#).unwrap(), None);
        assert_eq!(names("{}").unwrap(), None);
        let err = names(r#"{"NodeNames":["a",2]}"#).unwrap_err().to_string();
        assert!(err.contains("expected a string"), "{err}");
        assert!(names(r#"{"NodeNames":"a"}"#).is_err());
    }
}
