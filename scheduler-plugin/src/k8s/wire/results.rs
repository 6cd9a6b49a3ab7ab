//! The extender's results, encoded byte for byte as Go's `json.Marshal` encodes them: by
//! serde with Go's formatter, or by hand where a result lists thousands of nodes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::args::MetaVictims;
use crate::gojson::{self, GoRaw, NameList};

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
    pub node_names: Option<Vec<Name<'a>>>,
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

impl ExtenderFilterResult<'_> {
    /// The same bytes as `gojson::to_vec(self)`, written straight into one buffer sized up
    /// front: with thousands of node names the general serializer's per-string work shows.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let names: usize = self
            .node_names
            .iter()
            .flatten()
            .map(|n| n.text.len() + 3)
            .sum();
        let maps: usize = [&self.failed_nodes, &self.failed_and_unresolvable_nodes]
            .into_iter()
            .flatten()
            .map(SortedMap::encoded_len_hint)
            .sum();
        let mut out = Vec::with_capacity(names + maps + self.error.len() + 128);
        out.extend_from_slice(br#"{"Nodes":"#);
        match &self.nodes {
            None => out.extend_from_slice(b"null"),
            Some(list) => gojson::push_value(&mut out, list),
        }
        out.extend_from_slice(br#","NodeNames":"#);
        match &self.node_names {
            None => out.extend_from_slice(b"null"),
            Some(names) => {
                out.push(b'[');
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    gojson::push_name(&mut out, n.text, n.plain);
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(br#","FailedNodes":"#);
        SortedMap::push_option(&mut out, self.failed_nodes.as_ref());
        out.extend_from_slice(br#","FailedAndUnresolvableNodes":"#);
        SortedMap::push_option(&mut out, self.failed_and_unresolvable_nodes.as_ref());
        out.extend_from_slice(br#","Error":"#);
        gojson::push_string(&mut out, &self.error);
        out.push(b'}');
        out
    }
}

/// A node name in an answer: encoded as a JSON string; `plain` when it is known to need no
/// escaping (then it is copied as is).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Name<'a> {
    /// The name.
    pub text: &'a str,
    /// True only when `text` encodes as itself between quotes.
    pub plain: bool,
}

impl<'a> From<&'a str> for Name<'a> {
    fn from(text: &'a str) -> Self {
        Self { text, plain: false }
    }
}

impl Serialize for Name<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text)
    }
}

/// A Go `map[string]string` built from a list: encoded with keys in byte order (as Go sorts
/// them) and each key once. Cheaper than a `BTreeMap` for thousands of entries.
#[derive(Debug, Default)]
pub(crate) struct SortedMap<'a>(Vec<(&'a str, &'static str, bool)>);

impl<'a> SortedMap<'a> {
    /// Adds an entry (order does not matter).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: &'a str, value: &'static str) {
        self.insert_name(Name::from(key), value);
    }

    /// Adds an entry whose key may be known to need no JSON escaping.
    pub(crate) fn insert_name(&mut self, key: Name<'a>, value: &'static str) {
        self.0.push((key.text, value, key.plain));
    }

    /// Number of entries (a key added twice counts twice).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Sorts by key and keeps the last value of a repeated key, as a Go map would.
    pub(crate) fn finish(mut self) -> Self {
        // Already in order with no key twice (the names came sorted): nothing to do.
        if self.0.windows(2).all(|w| w[0].0 < w[1].0) {
            return self;
        }
        // Stable sort: entries of one key stay in insertion order, so the last one wins.
        self.0.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<(&'a str, &'static str, bool)> = Vec::with_capacity(self.0.len());
        for (k, v, plain) in self.0 {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v, plain)),
            }
        }
        Self(out)
    }
}

impl SortedMap<'_> {
    fn encoded_len_hint(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v, _)| k.len() + v.len() + 6)
            .sum::<usize>()
            + 2
    }

    /// Appends the map as [`Serialize`] would encode it (`null` for `None`).
    fn push_option(out: &mut Vec<u8>, map: Option<&Self>) {
        let Some(map) = map else {
            out.extend_from_slice(b"null");
            return;
        };
        out.push(b'{');
        // Reasons repeat (a few fixed texts): encode each distinct one once, then copy it.
        let mut last: Option<(&'static str, std::ops::Range<usize>)> = None;
        for (i, (k, v, plain)) in map.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            gojson::push_name(out, k, *plain);
            out.push(b':');
            match &last {
                Some((text, span)) if std::ptr::eq(*text, *v) => {
                    out.extend_from_within(span.clone());
                }
                _ => {
                    let start = out.len();
                    gojson::push_string(out, v);
                    last = Some((v, start..out.len()));
                }
            }
        }
        out.push(b'}');
    }
}

impl Serialize for SortedMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v, _) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// `HostPriority` (the general encoder's view, which the hand encoder is tested against).
#[cfg(test)]
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct HostPriority<'a> {
    /// `Host`.
    #[serde(rename = "Host")]
    pub host: &'a str,
    /// `Score`, 0..10.
    #[serde(rename = "Score")]
    pub score: i64,
}

/// Appends a score in decimal (the general form [`PriorityWriter`] is tested against).
#[cfg(test)]
fn push_score(out: &mut Vec<u8>, score: i64) {
    match u8::try_from(score) {
        Ok(d @ 0..=9) => out.push(b'0' + d),
        Ok(d @ 10..=99) => out.extend_from_slice(&[b'0' + d / 10, b'0' + d % 10]),
        _ => out.extend_from_slice(score.to_string().as_bytes()),
    }
}

/// Bytes to reserve for a `HostPriorityList` of `names` (the exact size when no name needs
/// escaping and no score has two digits).
pub(crate) fn priorities_len_hint(names: &NameList<'_>) -> usize {
    names.text_len() + 24 * names.len() + 2
}

/// Appends one `HostPriority` of a `HostPriorityList` as Go encodes it; `first` for the first
/// entry (no comma before it); `host` appends the host name as a JSON string. The list's `[`
/// and `]` are the caller's.
#[cfg(test)]
pub(crate) fn push_priority(
    out: &mut Vec<u8>,
    first: bool,
    score: u8,
    host: impl FnOnce(&mut Vec<u8>),
) {
    if first {
        out.extend_from_slice(br#"{"Host":"#);
    } else {
        out.extend_from_slice(br#",{"Host":"#);
    }
    host(out);
    out.extend_from_slice(br#","Score":"#);
    push_score(out, i64::from(score));
    out.push(b'}');
}

/// A `HostPriorityList` written as Go encodes it, host by host, straight into one buffer: after
/// each host's name, one block copy writes its score and the start of the next entry
/// (`,"Score":7},{"Host":`), so the fixed text costs no per-piece capacity checks.
pub(crate) struct PriorityWriter {
    out: Vec<u8>,
    any: bool,
    /// The joint after a host for scores 0..=10 (all there are, unless the configured neutral
    /// score is higher), built once: a joint built per host in a stack buffer byte by byte and
    /// then copied as a block stalls on store forwarding.
    joints: [([u8; 32], usize); 11],
}

/// `,{"Host":`, the start of an entry after the first.
const NEXT_HOST: &[u8] = br#",{"Host":"#;

/// `,"Score":N},{"Host":` for score N, padded to 32 bytes, and its length.
fn joint(score: u8) -> ([u8; 32], usize) {
    let mut joint = [0u8; 32];
    joint[..9].copy_from_slice(br#","Score":"#);
    let mut n = 9;
    if score >= 100 {
        joint[n] = b'0' + score / 100;
        n += 1;
    }
    if score >= 10 {
        joint[n] = b'0' + score / 10 % 10;
        n += 1;
    }
    joint[n] = b'0' + score % 10;
    n += 1;
    joint[n] = b'}';
    joint[n + 1..n + 1 + NEXT_HOST.len()].copy_from_slice(NEXT_HOST);
    (joint, n + 1 + NEXT_HOST.len())
}

impl PriorityWriter {
    /// A writer with room for about `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 32);
        out.extend_from_slice(br#"[{"Host":"#);
        let mut joints = [([0u8; 32], 0); 11];
        for (score, j) in (0u8..).zip(&mut joints) {
            *j = joint(score);
        }
        Self {
            out,
            any: false,
            joints,
        }
    }

    /// Appends one `HostPriority`: `host` appends the host name as a JSON string.
    #[inline(always)]
    pub(crate) fn push(&mut self, host: impl FnOnce(&mut Vec<u8>), score: u8) {
        host(&mut self.out);
        match self.joints.get(usize::from(score)) {
            Some((j, len)) => gojson::push_block::<32>(&mut self.out, j, *len),
            None => {
                let (j, len) = joint(score);
                self.out.extend_from_slice(&j[..len]);
            }
        }
        self.any = true;
    }

    /// The encoded list.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.any {
            // Drop the start of an entry that never came.
            self.out.truncate(self.out.len() - NEXT_HOST.len());
            self.out.push(b']');
            self.out
        } else {
            b"[]".to_vec()
        }
    }
}

/// A `HostPriorityList` encoded as Go would (the same bytes as `gojson::to_vec(list)`), written
/// straight into one buffer sized up front.
#[cfg(test)]
pub(crate) fn encode_priorities(list: &[HostPriority<'_>]) -> Vec<u8> {
    let len: usize = list.iter().map(|h| h.host.len() + 26).sum();
    let mut out = Vec::with_capacity(len + 2);
    out.push(b'[');
    for (i, h) in list.iter().enumerate() {
        let score = u8::try_from(h.score).unwrap_or(u8::MAX);
        push_priority(&mut out, i == 0, score, |out| {
            gojson::push_name(out, h.host, false);
        });
    }
    out.push(b']');
    out
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
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn hand_encoders_match_the_general_encoder() {
        let reasons = ["colo: a & b", "colo: <plain>", "plain"];
        let names = ["n-1", "n<2>", "é", "q\"", "tab\t", "\u{2028}", "", "n-1"];
        let mut failed = SortedMap::default();
        let mut unresolvable = SortedMap::default();
        for (i, n) in names.iter().enumerate() {
            failed.insert(n, reasons[i % 3]);
            unresolvable.insert(n, reasons[0]);
        }
        let raw = RawValue::from_string(r#"{"metadata":{"name":"a&b"}}"#.to_owned()).unwrap();
        let meta = RawValue::from_string("{}".to_owned()).unwrap();
        let cases = [
            ExtenderFilterResult::default(),
            ExtenderFilterResult {
                nodes: None,
                node_names: Some(names.iter().map(|n| Name::from(*n)).collect()),
                failed_nodes: Some(failed.finish()),
                failed_and_unresolvable_nodes: Some(unresolvable.finish()),
                error: String::new(),
            },
            ExtenderFilterResult {
                nodes: Some(NodeListOut {
                    kind: "NodeList",
                    api_version: "",
                    metadata: GoRaw(&meta),
                    items: vec![GoRaw(&raw), GoRaw(&raw)],
                }),
                node_names: Some(Vec::new()),
                failed_nodes: Some(SortedMap::default()),
                failed_and_unresolvable_nodes: None,
                error: "bad <input>\n".to_owned(),
            },
        ];
        // Names known plain (as the node table marks them) are copied as is: same bytes.
        let mut known = SortedMap::default();
        for n in names {
            let plain = gojson::is_plain(n.as_bytes());
            known.insert_name(Name { text: n, plain }, reasons[1]);
        }
        let known_names: Vec<Name<'_>> = names
            .iter()
            .map(|n| Name {
                text: n,
                plain: gojson::is_plain(n.as_bytes()),
            })
            .collect();
        assert!(known_names.iter().any(|n| n.plain) && known_names.iter().any(|n| !n.plain));
        let mut cases = Vec::from(cases);
        cases.push(ExtenderFilterResult {
            nodes: None,
            node_names: Some(known_names.clone()),
            failed_nodes: Some(known.finish()),
            failed_and_unresolvable_nodes: None,
            error: String::new(),
        });
        for c in &cases {
            assert_eq!(
                String::from_utf8(c.encode()).unwrap(),
                String::from_utf8(gojson::to_vec(c)).unwrap()
            );
        }
        let list: Vec<HostPriority<'_>> = names
            .iter()
            .zip([0, 1, 9, 10, 11, 99, 100, 255])
            .map(|(host, score)| HostPriority { host, score })
            .collect();
        assert_eq!(encode_priorities(&list), gojson::to_vec(&list));
        let mut out = b"[".to_vec();
        for (i, (n, h)) in known_names.iter().zip(&list).enumerate() {
            let score = u8::try_from(h.score).unwrap_or(u8::MAX);
            push_priority(&mut out, i == 0, score, |out| {
                gojson::push_name(out, n.text, n.plain);
            });
        }
        out.push(b']');
        assert_eq!(out, gojson::to_vec(&list));
        assert_eq!(encode_priorities(&[]), b"[]");
        for n in [0, 1, 2, list.len()] {
            let mut w = PriorityWriter::with_capacity(0);
            for h in &list[..n] {
                w.push(
                    |out| gojson::push_name(out, h.host, false),
                    u8::try_from(h.score).unwrap(),
                );
            }
            assert_eq!(w.finish(), gojson::to_vec(&list[..n]), "{n}");
        }
        assert_eq!(PriorityWriter::with_capacity(4).finish(), b"[]");
    }

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
            gojson::to_vec(&m),
            br#"{"Node-c":"y","node-a":"x","node-b":"second"}"#
        );
        assert_eq!(gojson::to_vec(&SortedMap::default().finish()), b"{}");
    }
}
