//! A serde `Deserializer` over a [`Node`] tree. Every error it produces carries the location and
//! field path of the node it arose at; unknown fields are collected (all of them, each with a
//! suggestion) rather than stopping at the first.

use std::cell::RefCell;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};

mod error;

pub(crate) use error::DeError;
use error::list;

use super::tree::{Key, Node, NodeKind};
use crate::error::ErrorKind;

/// Types `T` from `node`, returning every error found (unknown fields are all collected; other
/// errors stop at the first).
pub(crate) fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, Vec<DeError>> {
    let ctx = Ctx::default();
    let result = T::deserialize(NodeDe {
        node,
        path: String::new(),
        ctx: &ctx,
    });
    let mut errors = ctx.errors.into_inner();
    match result {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(e.at(node, ""));
            Err(errors)
        }
    }
}

#[derive(Default)]
struct Ctx {
    errors: RefCell<Vec<DeError>>,
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    ctx: &'a Ctx,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node, path: String) -> NodeDe<'a> {
        NodeDe {
            node,
            path,
            ctx: self.ctx,
        }
    }

    fn any<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::UInt(n) => visitor.visit_u64(*n),
            NodeKind::Int(n) => visitor.visit_i64(*n),
            NodeKind::Float(x) => visitor.visit_f64(*x),
            NodeKind::Str(s) => visitor.visit_borrowed_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe {
                items,
                index: 0,
                de: self,
            }),
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                entries,
                index: 0,
                de: self,
                fields: None,
                value: None,
            }),
        }
    }

    fn finish<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.node, &self.path))
    }
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = self.any(visitor);
        self.finish(r)
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_seq deserialize_map deserialize_identifier
        deserialize_i128 deserialize_u128
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.node.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self.child(self.node, self.path.clone())),
        };
        self.finish(r)
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let inner = self.child(self.node, self.path.clone());
        let r = visitor.visit_newtype_struct(inner);
        self.finish(r)
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                entries,
                index: 0,
                de: &self,
                fields: Some(fields),
                value: None,
            }),
            _ => {
                let mut e = DeError::new(ErrorKind::InvalidType, String::new());
                e.expected = Some(format!("a mapping with fields {}", list(fields)));
                Err(e)
            }
        };
        self.finish(r)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Str(_) => visitor.visit_enum(EnumDe {
                de: &self,
                key: None,
                value: self.node,
            }),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                visitor.visit_enum(EnumDe {
                    de: &self,
                    key: Some(k),
                    value: v,
                })
            }
            NodeKind::Map(_) => {
                let mut e = DeError::new(
                    ErrorKind::InvalidValue,
                    "give exactly one of the alternatives".to_owned(),
                );
                e.allowed = Some(list(variants));
                Err(e)
            }
            _ => {
                let mut e = DeError::new(ErrorKind::InvalidType, String::new());
                e.expected = Some(format!("one of {}", list(variants)));
                e.allowed = Some(list(variants));
                Err(e)
            }
        };
        self.finish(r)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a, 'b> {
    items: &'a [Node],
    index: usize,
    de: &'b NodeDe<'a>,
}

impl<'a> de::SeqAccess<'a> for SeqDe<'a, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.index) else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.de.path, self.index);
        self.index += 1;
        seed.deserialize(self.de.child(item, path)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.index)
    }
}

struct MapDe<'a, 'b> {
    entries: &'a [(Key, Node)],
    index: usize,
    de: &'b NodeDe<'a>,
    /// For structs: the known field names; unknown keys are reported and skipped.
    fields: Option<&'static [&'static str]>,
    value: Option<(&'a Key, &'a Node)>,
}

impl<'a> de::MapAccess<'a> for MapDe<'a, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        while let Some((key, value)) = self.entries.get(self.index) {
            self.index += 1;
            if let Some(fields) = self.fields
                && !fields.contains(&key.name.as_str())
            {
                let mut e = <DeError as de::Error>::unknown_field(&key.name, fields);
                e.loc = Some(key.loc);
                e.path = Some(join(&self.de.path, &key.name));
                self.de.ctx.errors.borrow_mut().push(e);
                continue;
            }
            self.value = Some((key, value));
            let key_de = de::value::BorrowedStrDeserializer::<DeError>::new(key.name.as_str());
            return seed.deserialize(key_de).map(Some).map_err(|mut e| {
                if e.loc.is_none() {
                    e.loc = Some(key.loc);
                    e.path = Some(join(&self.de.path, &key.name));
                }
                e
            });
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.value.take() else {
            return Err(DeError::new(
                ErrorKind::Syntax,
                "value requested before key".to_owned(),
            ));
        };
        seed.deserialize(self.de.child(value, join(&self.de.path, &key.name)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.index)
    }
}

struct EnumDe<'a, 'b> {
    de: &'b NodeDe<'a>,
    /// `Some` for the `{variant: value}` form; `None` for a bare string.
    key: Option<&'a Key>,
    value: &'a Node,
}

impl<'a, 'b> de::EnumAccess<'a> for EnumDe<'a, 'b> {
    type Error = DeError;
    type Variant = VariantDe<'a, 'b>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let (name, loc, path) = match (self.key, &self.value.kind) {
            (Some(k), _) => (k.name.as_str(), k.loc, join(&self.de.path, &k.name)),
            (None, NodeKind::Str(s)) => (s.as_str(), self.value.loc, self.de.path.clone()),
            (None, _) => {
                return Err(DeError::new(
                    ErrorKind::InvalidType,
                    "expected a name".into(),
                ));
            }
        };
        let name_de = de::value::BorrowedStrDeserializer::<DeError>::new(name);
        let v = seed.deserialize(name_de).map_err(|mut e| {
            if e.loc.is_none() {
                e.loc = Some(loc);
                e.path = Some(self.de.path.clone());
                e.value = Some(name.to_owned());
            }
            e
        })?;
        Ok((
            v,
            VariantDe {
                de: self.de,
                key: self.key,
                value: self.value,
                path,
            },
        ))
    }
}

struct VariantDe<'a, 'b> {
    de: &'b NodeDe<'a>,
    key: Option<&'a Key>,
    value: &'a Node,
    path: String,
}

impl<'a> de::VariantAccess<'a> for VariantDe<'a, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match (self.key, &self.value.kind) {
            (None, _) | (Some(_), NodeKind::Null) => Ok(()),
            (Some(k), _) => {
                let e = DeError::new(
                    ErrorKind::InvalidType,
                    format!("`{}` takes no value; write it as a plain string", k.name),
                );
                Err(e.at(self.value, &self.path))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        if self.key.is_none() {
            let e = DeError::new(
                ErrorKind::InvalidType,
                "this alternative needs a value: write it as `name: value`".to_owned(),
            );
            return Err(e.at(self.value, &self.path));
        }
        seed.deserialize(self.de.child(self.value, self.path))
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self.de.child(self.value, self.path), visitor)
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(
            self.de.child(self.value, self.path),
            "",
            fields,
            visitor,
        )
    }
}

#[cfg(test)]
mod tests;
