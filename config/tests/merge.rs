//! Merge semantics of policy sources, and error locations after merging.

use colo_config::units::Percent;
use colo_config::{ErrorKind, Source, parse_policy};

const HEAD: &str = "apiVersion: colo/v1\nkind: Policy\n";

fn src(name: &str, body: &str) -> Source {
    Source::new(name, format!("{HEAD}{body}"))
}

#[test]
fn later_files_override_earlier_ones_field_by_field() {
    let p = parse_policy(&[
        src(
            "a.yaml",
            "memory:\n  evict_at: 95%\n  stop_at: 80%\ncpu:\n  suppress:\n    headroom: 5%\n",
        ),
        src("b.yaml", "memory:\n  stop_at: 70%\n"),
    ])
    .unwrap();
    assert_eq!(p.memory.evict_at, "95%".parse::<Percent>().unwrap());
    assert_eq!(p.memory.stop_at, "70%".parse::<Percent>().unwrap());
    assert_eq!(p.cpu.suppress.headroom.value(), 5.0);
}

#[test]
fn sequences_are_replaced_whole() {
    let p = parse_policy(&[
        src(
            "a.yaml",
            "eviction:\n  order: [priority, oldest_first, largest_memory_first]\n",
        ),
        src("b.yaml", "eviction:\n  order: [largest_memory_first]\n"),
    ])
    .unwrap();
    assert_eq!(p.eviction.order.len(), 1);
}

#[test]
fn null_switches_an_optional_signal_off_and_a_later_file_can_set_it_again() {
    let off = parse_policy(&[src("a.yaml", "interference:\n  sli: null\n")]).unwrap();
    assert_eq!(off.interference.sli, None);
    let on = parse_policy(&[
        src("a.yaml", "interference:\n  sli: null\n"),
        src(
            "b.yaml",
            "interference:\n  sli:\n    high: 1.2\n    low: 0.9\n",
        ),
    ])
    .unwrap();
    assert_eq!(on.interference.sli.map(|t| t.high), Some(1.2));
}

#[test]
fn an_error_points_at_the_file_that_set_the_value() {
    let err = parse_policy(&[
        src("a.yaml", "mode: observe\n"),
        src("b.yaml", "metadata:\n  name: x\nmode: obsrve\n"),
    ])
    .unwrap_err();
    let e = &err.errors()[0];
    assert_eq!((e.file.as_str(), e.line, e.column), ("b.yaml", 5, 7));
    assert_eq!(e.suggestion.as_deref(), Some("observe"));
}

#[test]
fn an_overridden_mistake_is_gone_but_a_cross_file_conflict_is_found() {
    // a.yaml's bad value is replaced by b.yaml's good one.
    parse_policy(&[
        src("a.yaml", "memory:\n  stop_at: 99%\n"),
        src("b.yaml", "memory:\n  stop_at: 50%\n"),
    ])
    .unwrap();
    // stop_at from a.yaml, evict_at from b.yaml: the conflict is reported where stop_at was set.
    let err = parse_policy(&[
        src("a.yaml", "memory:\n  stop_at: 80%\n"),
        src("b.yaml", "memory:\n  evict_at: 75%\n"),
    ])
    .unwrap_err();
    let e = &err.errors()[0];
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(
        (e.file.as_str(), e.line, e.path.as_str()),
        ("a.yaml", 4, "memory.stop_at")
    );
}

#[test]
fn a_conflict_with_a_default_points_at_the_field_the_user_wrote() {
    let err = parse_policy(&[src("a.yaml", "memory:\n  evict_at: 80%\n")]).unwrap_err();
    let e = &err.errors()[0];
    assert_eq!((e.file.as_str(), e.line, e.column), ("a.yaml", 4, 13));
    assert_eq!(e.path, "memory.stop_at");
    assert!(
        e.message
            .contains("memory.stop_at is not set, so its default applies"),
        "{}",
        e.message
    );
}

#[test]
fn every_file_needs_the_header_even_in_a_directory() {
    let err =
        parse_policy(&[src("a.yaml", ""), Source::new("b.yaml", "mode: observe\n")]).unwrap_err();
    assert_eq!(err.errors().len(), 2, "{err}");
    assert!(
        err.errors()
            .iter()
            .all(|e| e.file == "b.yaml" && e.kind == ErrorKind::MissingField)
    );
}

#[test]
fn errors_in_several_files_are_all_reported_in_file_order() {
    let err = parse_policy(&[
        src("a.yaml", "cpu:\n  supress: {}\n"),
        src("b.yaml", "memroy: {}\n"),
    ])
    .unwrap_err();
    let names: Vec<_> = err
        .errors()
        .iter()
        .map(|e| (e.file.as_str(), e.suggestion.as_deref()))
        .collect();
    assert_eq!(
        names,
        vec![("a.yaml", Some("suppress")), ("b.yaml", Some("memory"))]
    );
}

#[test]
fn a_directory_is_read_in_lexical_order_skipping_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, body: &str| {
        std::fs::write(dir.path().join(name), format!("{HEAD}{body}")).unwrap()
    };
    w("b.yaml", "mode: observe\n");
    w("a.yaml", "mode: enforce\n");
    w("c.yml", "metadata: {name: c}\n");
    w(".hidden.yaml", "this is not: [valid\n");
    w("notes.txt", "ignored\n");
    let sources = colo_config::policy_sources(&[dir.path()]).unwrap();
    let names: Vec<_> = sources
        .iter()
        .map(|s| s.name.rsplit('/').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names, vec!["a.yaml", "b.yaml", "c.yml"]);
    let p = colo_config::load_policy(&[dir.path()]).unwrap();
    assert_eq!(p.mode, colo_config::policy::Mode::Observe);
}

#[test]
fn an_empty_directory_and_a_missing_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = colo_config::load_policy(&[dir.path()]).unwrap_err();
    assert!(e.to_string().contains("no *.yaml policy files"), "{e}");
    let e = colo_config::load_policy(&[dir.path().join("absent.yaml")]).unwrap_err();
    assert_eq!(e.errors()[0].kind, ErrorKind::Io);
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = String::from(HEAD);
    while text.len() as u64 <= colo_config::MAX_FILE_BYTES {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, text).unwrap();
    let e = colo_config::load_policy(&[&big]).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
}
