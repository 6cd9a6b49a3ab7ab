//! The deserializer's error: located at the node it arose at, with its field path, value and
//! suggestion, before the loader names the file.

use std::fmt;

use serde::de;

use crate::error::ErrorKind;
use crate::suggest::did_you_mean;
use crate::yaml::tree::{Loc, Node, NodeKind};

/// An error from typing a tree, before its file index is turned into a file name (boxed: it
/// travels through every `Result` of the deserializer).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError(Box<DeErrorData>);

impl std::ops::Deref for DeError {
    type Target = DeErrorData;
    fn deref(&self) -> &DeErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for DeError {
    fn deref_mut(&mut self) -> &mut DeErrorData {
        &mut self.0
    }
}

/// The contents of a [`DeError`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeErrorData {
    pub loc: Option<Loc>,
    pub path: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
    pub value: Option<String>,
    pub allowed: Option<String>,
    pub suggestion: Option<String>,
    /// For type errors: what was expected; the message is written once the node is known.
    pub(super) expected: Option<String>,
}

impl DeError {
    /// The error's contents.
    pub fn into_data(self) -> DeErrorData {
        *self.0
    }

    pub(super) fn new(kind: ErrorKind, message: String) -> Self {
        Self(Box::new(DeErrorData {
            loc: None,
            path: None,
            kind,
            message,
            value: None,
            allowed: None,
            suggestion: None,
            expected: None,
        }))
    }

    /// Fills in where the error happened, unless a deeper node already did.
    pub(super) fn at(mut self, node: &Node, path: &str) -> Self {
        if self.loc.is_some() {
            return self;
        }
        self.loc = Some(node.loc);
        self.path = Some(path.to_owned());
        if let Some(expected) = self.expected.take() {
            self.message = format!("expected {expected}, found {}", node.describe());
        }
        if self.value.is_none() && !matches!(node.kind, NodeKind::Seq(_) | NodeKind::Map(_)) {
            self.value = Some(node.display_value());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

pub(super) fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(ErrorKind::InvalidValue, msg.to_string())
    }

    fn invalid_type(_unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let mut e = Self::new(ErrorKind::InvalidType, format!("expected {exp}"));
        e.expected = Some(exp.to_string());
        e
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(
            ErrorKind::InvalidValue,
            format!("invalid value {unexp}, expected {exp}"),
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Self::new(
            ErrorKind::InvalidValue,
            format!("unknown value `{variant}`"),
        );
        e.suggestion = did_you_mean(variant, expected).map(str::to_owned);
        e.allowed = Some(list(expected));
        e
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Self::new(ErrorKind::UnknownField, format!("unknown field `{field}`"));
        e.suggestion = did_you_mean(field, expected).map(str::to_owned);
        e.allowed = Some(list(expected));
        e
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(
            ErrorKind::MissingField,
            format!("missing required field `{field}`"),
        )
    }
}
