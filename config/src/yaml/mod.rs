//! The YAML layer: parse text into a located tree, merge trees, and deserialize typed values from
//! a tree. No YAML type leaves this module: the rest of the crate sees [`Node`] and [`Loc`].

mod de;
mod merge;
mod parse;
mod tree;

pub(crate) use de::from_node;
pub(crate) use merge::merge_into;
pub(crate) use parse::{Limits, parse_document};
pub(crate) use tree::{Loc, Node, NodeKind};
