//! The `k8s.io/kube-scheduler/extender/v1` wire types, and the parts of `k8s.io/api/core/v1`
//! (Pod, NodeList) that colo reads.
//!
//! The extender structs have no json tags in Go, so Go encodes their fields under the Go field
//! names (`NodeNames`, `FailedNodes`, `Host`, `Score`, ...) and never omits one; nil maps, slices
//! and pointers encode as `null`. Core v1 types carry camelCase json tags (`metadata`, `items`).
//! Input is decoded with Go's case-insensitive key matching ([`crate::gojson`]). Full `Node`
//! objects are never re-encoded: colo passes them through byte for byte as raw JSON.
//!
//! | file | what |
//! |---|---|
//! | `core_v1.rs` | input: the core v1 objects colo reads (Pod, NodeList) |
//! | `args.rs` | input: the extender's request bodies |
//! | `results.rs` | output: the extender's results, encoded byte for byte as Go would |

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

mod args;
mod core_v1;
mod results;

pub use args::{ExtenderArgs, ExtenderPreemptionArgs, MetaPod, MetaVictims};
pub use core_v1::{Container, Pod, RawNode};
pub(crate) use results::{
    ExtenderFilterResult, ExtenderPreemptionResult, Name, NodeListOut, PriorityWriter, SortedMap,
    priorities_len_hint,
};
