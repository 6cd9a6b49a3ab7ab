//! Configuration errors: each names the file, line and column, the field path, the bad value and
//! what is allowed.

use std::fmt;

use serde::Serialize;

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid YAML, or breaks a resource bound (size, nesting, aliases).
    Syntax,
    /// A field that the schema does not have.
    UnknownField,
    /// A value of the wrong type (a string where a number belongs, …).
    InvalidType,
    /// A value of the right type that is not allowed (bad unit, out of range, unknown choice).
    InvalidValue,
    /// A required field is absent.
    MissingField,
    /// Two fields that contradict each other.
    Conflict,
}

impl ErrorKind {
    /// The kind's stable name, as used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Io => "io",
            Self::Syntax => "syntax",
            Self::UnknownField => "unknown_field",
            Self::InvalidType => "invalid_type",
            Self::InvalidValue => "invalid_value",
            Self::MissingField => "missing_field",
            Self::Conflict => "conflict",
        }
    }
}

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigError {
    /// The file, as the caller named it.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// The field path (`cpu.suppress.headroom`, `services[0].name`); empty for the whole file.
    pub path: String,
    /// What kind of mistake.
    pub kind: ErrorKind,
    /// What is wrong and how to fix it, in one line.
    pub message: String,
    /// The offending value as written, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What would be accepted, where that can be said briefly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
    /// The closest valid name, for misspellings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean `{s}`?")?;
        }
        if let Some(a) = &self.allowed {
            write!(f, " (allowed: {a})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in one load, in file and line order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in file and line order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// A single error.
    pub fn one(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self::one(e)
    }
}
