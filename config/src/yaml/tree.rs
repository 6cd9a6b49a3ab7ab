//! A YAML document as a tree whose every node remembers the file, line and column it came from.

/// Where a node was written: the index of its source file and a 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loc {
    /// Index into the list of sources the tree was built from.
    pub file: usize,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

/// One YAML node with its location.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Where the value was written.
    pub loc: Loc,
}

/// The value of a YAML node after YAML 1.2 core-schema scalar resolution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in document order; keys are unique.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its location.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    /// The key text.
    pub name: String,
    /// Where the key was written.
    pub loc: Loc,
}

impl Node {
    /// The value under `key` if this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key entry named `key` if this node is a mapping that has it.
    #[cfg(test)]
    pub fn key(&self, key: &str) -> Option<&Key> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k),
            _ => None,
        }
    }

    /// A short description of the node's type, for error messages ("a mapping", "integer `3`").
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".to_owned(),
            NodeKind::Bool(b) => format!("boolean `{b}`"),
            NodeKind::UInt(n) => format!("integer `{n}`"),
            NodeKind::Int(n) => format!("integer `{n}`"),
            NodeKind::Float(x) => format!("number `{x}`"),
            NodeKind::Str(s) => format!("string `{s}`"),
            NodeKind::Seq(_) => "a sequence".to_owned(),
            NodeKind::Map(_) => "a mapping".to_owned(),
        }
    }

    /// The scalar as written (for error messages), or a description of a collection.
    pub fn display_value(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".to_owned(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::UInt(n) => n.to_string(),
            NodeKind::Int(n) => n.to_string(),
            NodeKind::Float(x) => x.to_string(),
            NodeKind::Str(s) => s.clone(),
            NodeKind::Seq(_) => "<sequence>".to_owned(),
            NodeKind::Map(_) => "<mapping>".to_owned(),
        }
    }

    /// Finds the node at a dotted path such as `cpu.suppress.headroom` or `services[1].name`,
    /// returning the deepest node that exists on the way and whether the whole path was found.
    pub fn lookup<'a>(&'a self, path: &str) -> (&'a Node, bool) {
        let mut node = self;
        for segment in path_segments(path) {
            let next = match segment {
                Segment::Field(name) => node.get(name),
                Segment::Index(i) => match &node.kind {
                    NodeKind::Seq(items) => items.get(i),
                    _ => None,
                },
            };
            match next {
                Some(n) => node = n,
                None => return (node, false),
            }
        }
        (node, true)
    }
}

/// One step of a field path.
#[derive(Debug, PartialEq)]
pub(crate) enum Segment<'a> {
    /// A mapping key.
    Field(&'a str),
    /// A sequence index.
    Index(usize),
}

/// Splits `a.b[2].c` into `a`, `b`, `2`, `c`.
pub(crate) fn path_segments(path: &str) -> impl Iterator<Item = Segment<'_>> {
    path.split('.').filter(|s| !s.is_empty()).flat_map(|part| {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        let field = (!name.is_empty()).then_some(Segment::Field(name));
        let indices = rest
            .split('[')
            .filter_map(|i| i.trim_end_matches(']').parse::<usize>().ok())
            .map(Segment::Index);
        field.into_iter().chain(indices).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_split_fields_and_indices() {
        let segs: Vec<_> = path_segments("services[2].selector.cgroups[0]").collect();
        assert_eq!(
            segs,
            vec![
                Segment::Field("services"),
                Segment::Index(2),
                Segment::Field("selector"),
                Segment::Field("cgroups"),
                Segment::Index(0),
            ]
        );
        assert_eq!(path_segments("").count(), 0);
    }
}
