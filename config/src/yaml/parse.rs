//! Text → [`Node`] tree, through serde-saphyr with every resource budget tightened to what a
//! configuration file can plausibly need, so hostile input (alias bombs, deep nesting, huge
//! scalars) is rejected quickly and in bounded memory.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::tree::{Key, Loc, Node, NodeKind};

/// Resource bounds for one YAML document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Most YAML nodes (scalars, sequences, mappings), counting alias expansions.
    pub max_nodes: usize,
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most parser events replayed through aliases in one document.
    pub max_alias_replay: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A complete policy with every field is ~300 nodes and ~15 KiB; these bounds leave two
        // orders of magnitude of room while keeping the worst case in the low megabytes.
        Self {
            max_bytes: 1 << 20,
            max_nodes: 50_000,
            max_depth: 32,
            max_alias_replay: 10_000,
        }
    }
}

/// Why a document could not be turned into a tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    /// Where (line and column; the file index is the caller's).
    pub loc: Loc,
    /// The field path, where known (empty for syntax errors).
    pub path: String,
    /// What went wrong, without location.
    pub message: String,
}

/// A tree node as deserialized from serde-saphyr, before locations are flattened.
enum Raw {
    Null,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(if v >= 0 {
            Raw::UInt(v.unsigned_abs())
        } else {
            Raw::Int(v)
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        i64::try_from(v)
            .map(|v| {
                if v >= 0 {
                    Raw::UInt(v.unsigned_abs())
                } else {
                    Raw::Int(v)
                }
            })
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        u64::try_from(v)
            .map(Raw::UInt)
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Spanned<Raw>, Spanned<Raw>>()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

/// Parses one YAML document into a located tree; `file` is recorded in every [`Loc`].
///
/// An empty document (only comments or whitespace) yields a `Null` node at 1:1.
pub(crate) fn parse_document(text: &str, file: usize, limits: Limits) -> Result<Node, ParseError> {
    let start = Loc {
        file,
        line: 1,
        column: 1,
    };
    if text.len() > limits.max_bytes {
        return Err(ParseError {
            loc: start,
            path: String::new(),
            message: format!(
                "input is {} bytes, larger than the limit of {} bytes; a configuration file this \
                 large is almost certainly a mistake",
                text.len(),
                limits.max_bytes
            ),
        });
    }
    if is_blank(text) {
        return Ok(Node {
            kind: NodeKind::Null,
            loc: start,
        });
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(limits.max_bytes),
            max_nodes: limits.max_nodes,
            max_depth: limits.max_depth,
            max_documents: 1,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_events: limits.max_nodes.saturating_mul(2),
            max_recorded_anchor_events: limits.max_alias_replay,
            max_recorded_anchor_bytes: limits.max_bytes,
            max_total_scalar_bytes: limits.max_bytes,
            max_merge_keys: 1_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: limits.max_alias_replay,
            max_replay_stack_depth: limits.max_depth,
        },
        // Duplicates reach our own check, which names both places.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        with_snippet: false,
        // YAML 1.2 booleans only: `y`, `no`, `on` stay strings (no "Norway problem").
        strict_booleans: true,
        reject_unsupported_tags: true,
    };
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| saphyr_error(&e, file, limits))?;
    let mut budget = limits.max_nodes;
    convert(raw, file, &mut budget, "")
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

fn saphyr_error(e: &serde_saphyr::Error, file: usize, limits: Limits) -> ParseError {
    let loc = e
        .location()
        .map(|l| Loc {
            file,
            line: l.line().max(1),
            column: l.column().max(1),
        })
        .unwrap_or(Loc {
            file,
            line: 1,
            column: 1,
        });
    let message = match budget_message(e, limits) {
        Some(m) => m,
        None => {
            let text: Cow<'_, str> = UserMessageFormatter.format_message(e.without_snippet());
            // The text may carry control characters from the input; keep one clean line.
            let line: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            line.trim().to_owned()
        }
    };
    ParseError {
        loc,
        path: String::new(),
        message,
    }
}

/// Plain words for the resource bounds, which the parser reports in its own terms.
fn budget_message(e: &serde_saphyr::Error, limits: Limits) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e.without_snippet();
    while let E::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    let alias_bomb = || {
        format!(
            "YAML aliases expand beyond the limit of {} replayed nodes (an alias bomb?); \
             configuration needs no large aliases: write the values out",
            limits.max_alias_replay
        )
    };
    Some(match e {
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => alias_bomb(),
        E::Budget { breach, .. } => match breach {
            B::Documents { .. } => {
                "only one YAML document per file is allowed: remove the second `---` or split \
                 the file"
                    .to_owned()
            }
            B::Depth { .. } => format!("nesting is deeper than {} levels", limits.max_depth),
            B::Aliases { .. }
            | B::Anchors { .. }
            | B::AliasAnchorRatio { .. }
            | B::RecordedAnchorEvents { .. }
            | B::RecordedAnchorBytes { .. }
            | B::MergeKeys { .. } => alias_bomb(),
            _ => format!(
                "document is too large or complex (more than {} nodes or {} bytes)",
                limits.max_nodes, limits.max_bytes
            ),
        },
        _ => return None,
    })
}

fn to_loc(s: &Spanned<Raw>, file: usize) -> Loc {
    let l = &s.referenced;
    Loc {
        file,
        line: l.line().max(1),
        column: l.column().max(1),
    }
}

fn convert(
    raw: Spanned<Raw>,
    file: usize,
    budget: &mut usize,
    path: &str,
) -> Result<Node, ParseError> {
    let loc = to_loc(&raw, file);
    if *budget == 0 {
        return Err(ParseError {
            loc,
            path: String::new(),
            message: "document has too many nodes (after alias expansion)".to_owned(),
        });
    }
    *budget -= 1;
    let kind = match raw.value {
        Raw::Null => NodeKind::Null,
        Raw::Bool(b) => NodeKind::Bool(b),
        Raw::UInt(n) => NodeKind::UInt(n),
        Raw::Int(n) => NodeKind::Int(n),
        Raw::Float(x) => NodeKind::Float(x),
        Raw::Str(s) => NodeKind::Str(s),
        Raw::Seq(items) => NodeKind::Seq(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, file, budget, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Raw::Map(entries) => {
            let mut out: Vec<(Key, Node)> = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let kloc = to_loc(&k, file);
                let name = match k.value {
                    Raw::Str(s) => s,
                    Raw::UInt(n) => n.to_string(),
                    Raw::Int(n) => n.to_string(),
                    Raw::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ParseError {
                            loc: kloc,
                            path: String::new(),
                            message: "mapping keys must be plain strings".to_owned(),
                        });
                    }
                };
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                if let Some((first, _)) = out.iter().find(|(existing, _)| existing.name == name) {
                    return Err(ParseError {
                        loc: kloc,
                        path: child,
                        message: format!(
                            "duplicate key `{name}` (first given at line {}, column {}): keep one",
                            first.loc.line, first.loc.column
                        ),
                    });
                }
                let value = convert(v, file, budget, &child)?;
                out.push((Key { name, loc: kloc }, value));
            }
            NodeKind::Map(out)
        }
    };
    Ok(Node { kind, loc })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, ParseError> {
        parse_document(text, 0, Limits::default())
    }

    #[test]
    fn scalars_resolve_by_the_yaml_core_schema() {
        let n = parse("y: yes\na: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: 50ms\ng: \"3\"\n").unwrap();
        assert_eq!(n.get("y").unwrap().kind, NodeKind::Str("yes".into()));
        assert_eq!(n.get("a").unwrap().kind, NodeKind::UInt(1));
        assert_eq!(n.get("b").unwrap().kind, NodeKind::Int(-2));
        assert_eq!(n.get("c").unwrap().kind, NodeKind::Float(1.5));
        assert_eq!(n.get("d").unwrap().kind, NodeKind::Bool(true));
        assert_eq!(n.get("e").unwrap().kind, NodeKind::Null);
        assert_eq!(n.get("f").unwrap().kind, NodeKind::Str("50ms".into()));
        assert_eq!(n.get("g").unwrap().kind, NodeKind::Str("3".into()));
    }

    #[test]
    fn nodes_and_keys_carry_line_and_column() {
        let n = parse("top:\n  inner: [1, 2]\n").unwrap();
        let top = n.get("top").unwrap();
        let inner_key = top.key("inner").unwrap();
        assert_eq!((inner_key.loc.line, inner_key.loc.column), (2, 3));
        let inner = top.get("inner").unwrap();
        assert_eq!((inner.loc.line, inner.loc.column), (2, 10));
        match &inner.kind {
            NodeKind::Seq(items) => assert_eq!((items[1].loc.line, items[1].loc.column), (2, 14)),
            other => panic!("expected a sequence, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_places() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.loc.line, 3);
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn empty_documents_are_null() {
        assert_eq!(parse("# nothing\n\n").unwrap().kind, NodeKind::Null);
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.loc.line >= 1, "{e:?}");
        assert!(!e.message.is_empty());
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let e = parse_document("a: 123456789012\n", 0, limits).unwrap_err();
        assert!(e.message.contains("larger than the limit"), "{}", e.message);
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let doc = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&doc).is_err());
    }
}
