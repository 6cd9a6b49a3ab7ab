//! Loading: files and directories → sources → merged tree (over the defaults) → typed value →
//! validation, with every error located in the file that caused it.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::AgentConfig;
use crate::error::{ConfigError, ConfigErrors, ErrorKind};
use crate::policy::Policy;
use crate::policy::validate::Violation;
use crate::yaml::{Limits, Loc, Node, NodeKind, from_node, merge_into, parse_document};

/// Largest configuration file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most `*.yaml` files read from one policy directory.
pub const MAX_DIR_FILES: usize = 256;

/// The file index given to built-in defaults in the merged tree.
const DEFAULTS: usize = usize::MAX;

/// One configuration text and the name errors will use for it (usually its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Shown in errors as `NAME:LINE:COL`.
    pub name: String,
    /// The YAML text.
    pub text: String,
}

impl Source {
    /// A source from a name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Reads one file, refusing files larger than [`MAX_FILE_BYTES`] and anything but a regular
    /// file (a FIFO or a device would block the reader or never end).
    pub fn read(path: &Path) -> Result<Self, ConfigErrors> {
        let name = path.display().to_string();
        let io_err = |message: String| ConfigError {
            file: name.clone(),
            line: 1,
            column: 1,
            path: String::new(),
            kind: ErrorKind::Io,
            message,
            value: None,
            allowed: None,
            suggestion: None,
        };
        // O_NONBLOCK: opening a FIFO without a writer must not wait for one; the type is then
        // checked on the open file, so a path swapped after a check cannot slip through.
        let file = fs::File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| io_err(format!("cannot open: {e}")))?;
        let kind = file
            .metadata()
            .map_err(|e| io_err(format!("cannot stat: {e}")))?
            .file_type();
        if !kind.is_file() {
            return Err(ConfigErrors::one(io_err(format!(
                "is not a regular file (it is {}); a configuration or policy file must be a \
                 regular file",
                file_kind(kind)
            ))));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_err(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(ConfigErrors::one(io_err(format!(
                "file is larger than {MAX_FILE_BYTES} bytes; a configuration file this large is \
                 almost certainly a mistake"
            ))));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            io_err(format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(Self { name, text })
    }
}

/// What a non-regular file is, for messages.
fn file_kind(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Expands files and directories into the policy sources to merge, in order: a file as itself,
/// a directory as its `*.yaml` / `*.yml` files (hidden files skipped) in lexical order.
pub fn policy_sources<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Source>, ConfigErrors> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let files = if path.is_dir() {
            match dir_files(path) {
                Ok(f) => f,
                Err(e) => {
                    errors.extend(e.0);
                    continue;
                }
            }
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            match Source::read(&f) {
                Ok(s) => sources.push(s),
                Err(e) => errors.extend(e.0),
            }
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let err = |message: String| {
        ConfigErrors::one(ConfigError {
            file: dir.display().to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            kind: ErrorKind::Io,
            message,
            value: None,
            allowed: None,
            suggestion: None,
        })
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| err(format!("cannot list directory: {e}")))? {
        let entry = entry.map_err(|e| err(format!("cannot list directory: {e}")))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with('.') && entry.path().is_file() {
            files.push(entry.path());
        }
        if files.len() > MAX_DIR_FILES {
            return Err(err(format!(
                "more than {MAX_DIR_FILES} policy files in one directory"
            )));
        }
    }
    if files.is_empty() {
        return Err(err("no *.yaml policy files in this directory".to_owned()));
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Loads the policy from files and directories, merged in order over the built-in defaults.
/// An empty list gives the default policy.
pub fn load_policy<P: AsRef<Path>>(paths: &[P]) -> Result<Policy, ConfigErrors> {
    parse_policy(&policy_sources(paths)?)
}

/// Parses, merges and validates policy sources (the first is the base, later ones override it
/// field by field).
pub fn parse_policy(sources: &[Source]) -> Result<Policy, ConfigErrors> {
    let mut errors = Vec::new();
    let mut tree = defaults_tree(&Policy::default());
    for (i, source) in sources.iter().enumerate() {
        match parse_document(&source.text, i, Limits::default()) {
            Ok(node) => {
                let header = check_policy_header(&node, sources);
                if header.is_empty() {
                    merge_into(&mut tree, node);
                } else {
                    errors.extend(header);
                }
            }
            Err(e) => errors.push(located(
                sources,
                e.loc,
                &e.path,
                ErrorKind::Syntax,
                e.message,
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    type_and_check(&tree, sources, crate::policy::validate::validate)
}

/// Loads `agent.yaml` over the built-in defaults.
pub fn load_agent(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    parse_agent(&Source::read(path)?)
}

/// Parses and validates an `agent.yaml` text.
pub fn parse_agent(source: &Source) -> Result<AgentConfig, ConfigErrors> {
    let sources = std::slice::from_ref(source);
    let node = parse_document(&source.text, 0, Limits::default())
        .map_err(|e| located(sources, e.loc, &e.path, ErrorKind::Syntax, e.message))?;
    let mut tree = defaults_tree(&AgentConfig::default());
    if node.kind != NodeKind::Null {
        merge_into(&mut tree, node);
    }
    type_and_check(&tree, sources, crate::agent::validate::validate)
}

fn type_and_check<T: DeserializeOwned>(
    tree: &Node,
    sources: &[Source],
    validate: fn(&T) -> Vec<Violation>,
) -> Result<T, ConfigErrors> {
    let value: T = from_node(tree).map_err(|errs| {
        let mut out: Vec<ConfigError> = errs
            .into_iter()
            .map(|e| e.into_data())
            .map(|e| ConfigError {
                value: e.value,
                allowed: e.allowed,
                suggestion: e.suggestion,
                ..located(
                    sources,
                    e.loc.unwrap_or_default(),
                    &e.path.unwrap_or_default(),
                    e.kind,
                    e.message,
                )
            })
            .collect();
        sort(&mut out);
        ConfigErrors(out)
    })?;
    let mut out: Vec<ConfigError> = validate(&value)
        .into_iter()
        .map(|v| violation_error(tree, sources, v))
        .collect();
    if out.is_empty() {
        Ok(value)
    } else {
        sort(&mut out);
        Err(ConfigErrors(out))
    }
}

fn sort(errors: &mut [ConfigError]) {
    // Sources are numbered in merge order; keep that order rather than sorting by name.
    errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
    errors.sort_by_key(|e| e.file.clone());
}

/// Turns a violation's field path into a location: the field's own if a file set it; else the
/// related field's if a file set that (the default is then named); else the nearest enclosing
/// mapping a file wrote.
fn violation_error(tree: &Node, sources: &[Source], v: Violation) -> ConfigError {
    let user_loc = |path: &str| {
        let (node, found) = tree.lookup(path);
        (found && node.loc.file != DEFAULTS).then_some(node.loc)
    };
    let mut message = v.message;
    let loc = match (user_loc(&v.path), v.related.as_deref().and_then(user_loc)) {
        (Some(loc), _) => loc,
        (None, Some(loc)) => {
            message.push_str(&format!(" ({} is not set, so its default applies)", v.path));
            loc
        }
        (None, None) => nearest_user_ancestor(tree, &v.path),
    };
    ConfigError {
        value: Some(v.value),
        allowed: v.allowed,
        ..located(sources, loc, &v.path, v.kind, message)
    }
}

fn nearest_user_ancestor(tree: &Node, path: &str) -> Loc {
    let mut p = path;
    loop {
        let (node, _) = tree.lookup(p);
        if node.loc.file != DEFAULTS {
            return node.loc;
        }
        match p.rfind(['.', '[']) {
            Some(i) => p = &p[..i],
            None => {
                return Loc {
                    file: 0,
                    line: 1,
                    column: 1,
                };
            }
        }
    }
}

fn located(
    sources: &[Source],
    loc: Loc,
    path: &str,
    kind: ErrorKind,
    message: String,
) -> ConfigError {
    let (file, loc) = match sources.get(loc.file) {
        Some(s) => (s.name.clone(), loc),
        // A location in the defaults (should not be reported, but never lose the error).
        None => (
            sources
                .first()
                .map_or_else(|| "<defaults>".to_owned(), |s| s.name.clone()),
            Loc {
                file: 0,
                line: 1,
                column: 1,
            },
        ),
    };
    ConfigError {
        file,
        line: loc.line,
        column: loc.column,
        path: path.to_owned(),
        kind,
        message,
        value: None,
        allowed: None,
        suggestion: None,
    }
}

/// Every policy file names its schema, so a fragment is never mistaken for another kind of
/// document and an old file is refused once the schema moves on.
fn check_policy_header(node: &Node, sources: &[Source]) -> Vec<ConfigError> {
    let hint = "every policy file starts with `apiVersion: colo/v1` and `kind: Policy`";
    if !matches!(node.kind, NodeKind::Map(_)) {
        let what = if node.kind == NodeKind::Null {
            "the file is empty".to_owned()
        } else {
            format!("found {}", node.describe())
        };
        return vec![located(
            sources,
            node.loc,
            "",
            ErrorKind::InvalidType,
            format!("expected a policy mapping, {what}: {hint}"),
        )];
    }
    let mut out = Vec::new();
    for (field, expected) in [
        ("apiVersion", crate::POLICY_API_VERSION),
        ("kind", "Policy"),
    ] {
        match node.get(field) {
            None => out.push(located(
                sources,
                node.loc,
                "",
                ErrorKind::MissingField,
                format!("missing required field `{field}`: {hint}"),
            )),
            Some(v) if v.kind != NodeKind::Str(expected.to_owned()) => out.push(ConfigError {
                value: Some(v.display_value()),
                allowed: Some(format!("`{expected}`")),
                suggestion: None,
                ..located(
                    sources,
                    v.loc,
                    field,
                    ErrorKind::InvalidValue,
                    format!("unsupported {field} `{}`", v.display_value()),
                )
            }),
            Some(_) => {}
        }
    }
    out
}

/// The built-in defaults as a tree to merge files onto, so defaults apply field by field at
/// every depth.
fn defaults_tree<T: Serialize>(value: &T) -> Node {
    // Serializing our own types cannot fail, and the text is small and well-formed.
    let text = serde_saphyr::to_string(value).unwrap_or_default();
    let mut node = parse_document(&text, DEFAULTS, Limits::default()).unwrap_or(Node {
        kind: NodeKind::Map(Vec::new()),
        loc: Loc::default(),
    });
    mark(&mut node);
    node
}

fn mark(node: &mut Node) {
    node.loc.file = DEFAULTS;
    match &mut node.kind {
        NodeKind::Seq(items) => items.iter_mut().for_each(mark),
        NodeKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            k.loc.file = DEFAULTS;
            mark(v);
        }),
        _ => {}
    }
}

impl Policy {
    /// The policy as YAML (the effective policy, with every default written out).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }
}

impl AgentConfig {
    /// The configuration as YAML, with every default written out.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_round_trip_through_yaml() {
        let p =
            parse_policy(&[Source::new("p.yaml", "apiVersion: colo/v1\nkind: Policy\n")]).unwrap();
        assert_eq!(p, Policy::default());
        let a = parse_agent(&Source::new("a.yaml", "")).unwrap();
        assert_eq!(a, AgentConfig::default());
    }

    /// Runs `f` on a thread; panics if it does not return within 10 s (it blocked).
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading blocked for 10 s")
    }

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    #[test]
    fn a_fifo_is_refused_at_once_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("policy.yaml");
        mkfifo(&fifo);
        let f = fifo.clone();
        let e = within_10s(move || policy_sources(&[f]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("{}:1:1: ", fifo.display())), "{e}");
        assert!(
            e.contains("is not a regular file (it is a FIFO)")
                && e.contains("must be a regular file"),
            "{e}"
        );
        let f = fifo.clone();
        let e = within_10s(move || load_agent(&f)).unwrap_err().to_string();
        assert!(e.contains("must be a regular file"), "{e}");
        // Special files too: a device would never end.
        let e = within_10s(|| Source::read(Path::new("/dev/zero")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("it is a character device"), "{e}");
    }

    #[test]
    fn the_default_tree_is_complete() {
        let tree = defaults_tree(&Policy::default());
        let (n, found) = tree.lookup("qos_classes.mid.cpu_floor");
        assert!(found, "{n:?}");
    }
}
