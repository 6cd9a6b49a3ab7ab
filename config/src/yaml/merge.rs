//! Field-wise merge of policy trees: later files override earlier ones key by key.

use super::tree::{Node, NodeKind};

/// Merges `overlay` into `base`: mappings merge key by key (recursively); any other value in
/// `overlay` — scalar, sequence or `null` — replaces the value in `base` whole, keeping the
/// overlay's location so errors point at the file that set it.
pub(crate) fn merge_into(base: &mut Node, overlay: Node) {
    match (&mut base.kind, overlay.kind) {
        (NodeKind::Map(base_entries), NodeKind::Map(overlay_entries)) => {
            for (key, value) in overlay_entries {
                match base_entries.iter_mut().find(|(k, _)| k.name == key.name) {
                    Some((k, existing)) => {
                        *k = key;
                        merge_into(existing, value);
                    }
                    None => base_entries.push((key, value)),
                }
            }
        }
        (_, kind) => {
            base.kind = kind;
            base.loc = overlay.loc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse::{Limits, parse_document};

    fn doc(text: &str, file: usize) -> Node {
        parse_document(text, file, Limits::default()).unwrap()
    }

    #[test]
    fn maps_merge_field_by_field_and_scalars_replace() {
        let mut base = doc("a:\n  x: 1\n  y: 2\nlist: [1, 2, 3]\n", 0);
        merge_into(&mut base, doc("a:\n  y: 20\n  z: 30\nlist: [9]\n", 1));
        let a = base.get("a").unwrap();
        assert_eq!(a.get("x").unwrap().kind, NodeKind::UInt(1));
        assert_eq!(a.get("x").unwrap().loc.file, 0);
        assert_eq!(a.get("y").unwrap().kind, NodeKind::UInt(20));
        assert_eq!(a.get("y").unwrap().loc.file, 1);
        assert_eq!(a.get("z").unwrap().kind, NodeKind::UInt(30));
        match &base.get("list").unwrap().kind {
            NodeKind::Seq(items) => assert_eq!(items.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn null_overrides_and_a_map_can_replace_a_scalar() {
        let mut base = doc("a:\n  x: 1\nb: 3\n", 0);
        merge_into(&mut base, doc("a: null\nb:\n  c: 1\n", 1));
        assert_eq!(base.get("a").unwrap().kind, NodeKind::Null);
        assert_eq!(
            base.get("b").unwrap().get("c").unwrap().kind,
            NodeKind::UInt(1)
        );
    }
}
