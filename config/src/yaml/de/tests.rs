//! Unit tests of typing a tree.

use serde::Deserialize;

use super::*;
use crate::yaml::parse::{Limits, parse_document};

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Inner {
    headroom: u32,
    #[serde(default)]
    step_down: u32,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Enforce,
    Observe,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Selector {
    Cgroups(Vec<String>),
    SystemdUnit(String),
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Outer {
    inner: Inner,
    mode: Mode,
    #[serde(default)]
    list: Vec<Selector>,
    #[serde(default)]
    opt: Option<u8>,
}

fn de<T: DeserializeOwned>(text: &str) -> Result<T, Vec<DeError>> {
    from_node(&parse_document(text, 0, Limits::default()).unwrap())
}

#[test]
fn types_a_well_formed_tree() {
    let o: Outer = de("inner:\n  headroom: 5\nmode: observe\nlist:\n  - systemd_unit: a.service\n  - cgroups: [/a, /b]\n").unwrap();
    assert_eq!(
        o.inner,
        Inner {
            headroom: 5,
            step_down: 0
        }
    );
    assert_eq!(o.mode, Mode::Observe);
    assert_eq!(o.list[1], Selector::Cgroups(vec!["/a".into(), "/b".into()]));
    assert_eq!(o.opt, None);
}

#[test]
fn every_unknown_field_is_reported_with_a_suggestion() {
    let errs = de::<Outer>("inner:\n  hedroom: 5\n  headroom: 5\n  step_dwn: 1\nmode: enforce\n")
        .unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].path.as_deref(), Some("inner.hedroom"));
    assert_eq!(errs[0].suggestion.as_deref(), Some("headroom"));
    assert_eq!(errs[0].loc.map(|l| (l.line, l.column)), Some((2, 3)));
    assert_eq!(errs[1].suggestion.as_deref(), Some("step_down"));
}

#[test]
fn type_errors_name_what_was_found_and_where() {
    let errs = de::<Outer>("inner:\n  headroom: lots\nmode: enforce\n").unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!(e.path.as_deref(), Some("inner.headroom"));
    assert_eq!(e.loc.map(|l| (l.line, l.column)), Some((2, 13)));
    assert_eq!(e.message, "expected u32, found string `lots`");
}

#[test]
fn unknown_enum_values_suggest_the_closest() {
    let errs = de::<Outer>("inner: {headroom: 1}\nmode: enforse\n").unwrap_err();
    let e = &errs[0];
    assert_eq!(e.path.as_deref(), Some("mode"));
    assert_eq!(e.suggestion.as_deref(), Some("enforce"));
    assert_eq!(e.allowed.as_deref(), Some("`enforce`, `observe`"));
    assert_eq!(e.loc.map(|l| (l.line, l.column)), Some((2, 7)));
}

#[test]
fn missing_fields_point_at_the_enclosing_mapping() {
    let errs = de::<Outer>("inner:\n  step_down: 1\nmode: enforce\n").unwrap_err();
    assert_eq!(errs[0].kind, ErrorKind::MissingField);
    assert_eq!(errs[0].path.as_deref(), Some("inner"));
    assert_eq!(errs[0].loc.map(|l| l.line), Some(2));
}

#[test]
fn selectors_need_exactly_one_alternative() {
    let errs = de::<Outer>(
        "inner: {headroom: 1}\nmode: enforce\nlist:\n  - {cgroups: [/a], systemd_unit: x}\n",
    )
    .unwrap_err();
    assert_eq!(errs[0].path.as_deref(), Some("list[0]"));
    assert!(
        errs[0].message.contains("exactly one"),
        "{}",
        errs[0].message
    );
}
