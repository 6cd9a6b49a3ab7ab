//! Go-compatible JSON, as kube-scheduler speaks it: decoding as Go's `encoding/json` does
//! (object keys matched case-insensitively, unknown keys ignored, `null` as the zero value, a
//! later duplicate key winning) and encoding byte for byte as Go's `json.Marshal` does. Knows
//! nothing of Kubernetes: the extender's wire types (`crate::k8s`) are written with it.
//!
//! | file | what |
//! |---|---|
//! | `fields.rs` | structs decoded with Go's key rules ([`GoStruct`], [`go_deserialize!`]) and [`Text`] |
//! | `object.rs` | a top-level object walked by hand, so one huge field gets a pass of its own |
//! | `names.rs` | a JSON array of node names as spans of the request body ([`NameList`]) |
//! | `scan.rs` | the byte scanner under both: string ends 16 bytes at a time, whitespace |
//! | `encode.rs` | Go's encoder: its escaping, raw JSON re-encoded, hand-written pushes |

mod encode;
mod fields;
mod names;
mod object;
mod scan;

pub(crate) use encode::{
    GoRaw, is_plain, push_block, push_name, push_short, push_string, push_value, to_vec,
};
pub use fields::Text;
pub(crate) use fields::{GoField, GoStruct, go_deserialize, go_struct};
pub use names::NameList;
pub(crate) use names::{string_array, string_array_at};
pub(crate) use object::{go_object, value_at};
