//! Hostile YAML is refused quickly: alias bombs, deep nesting, merge-key amplification.
//! (Time bounds here are generous; `docs/policy.md` has the `/usr/bin/time -v` measurement.)

use std::time::{Duration, Instant};

use colo_config::{Source, parse_policy};

fn bomb(levels: usize, fan_out: usize) -> String {
    let mut doc = String::from("apiVersion: colo/v1\nkind: Policy\n");
    let lols = vec!["lol"; fan_out].join(", ");
    doc.push_str(&format!("a0: &a0 [{lols}]\n"));
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); fan_out].join(", ");
        doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    doc
}

fn refused_quickly(name: &str, text: String) -> String {
    let start = Instant::now();
    let err = parse_policy(&[Source::new(name, text)]).expect_err("hostile input accepted");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    err.to_string()
}

#[test]
fn the_ten_level_billion_laughs_is_refused() {
    let msg = refused_quickly("bomb.yaml", bomb(10, 10));
    assert!(msg.starts_with("bomb.yaml:"), "{msg}");
    assert!(msg.contains("alias bomb"), "{msg}");
}

#[test]
fn wide_and_deep_variants_are_refused() {
    assert!(refused_quickly("wide.yaml", bomb(4, 200)).contains("alias"));
    assert!(refused_quickly("deep.yaml", bomb(30, 2)).contains("alias"));
}

#[test]
fn a_mapping_bomb_through_merge_keys_is_refused() {
    let mut doc = String::from(
        "apiVersion: colo/v1\nkind: Policy\nm0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n",
    );
    for i in 1..12 {
        let p = i - 1;
        doc.push_str(&format!(
            "m{i}: &m{i}\n  x: [*m{p}, *m{p}, *m{p}, *m{p}, *m{p}, *m{p}, *m{p}, *m{p}]\n"
        ));
    }
    refused_quickly("maps.yaml", doc);
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!(
        "apiVersion: colo/v1\nkind: Policy\nx: {}1{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let msg = refused_quickly("nest.yaml", text);
    assert!(msg.contains("nest.yaml:3:"), "{msg}");
}

#[test]
fn small_aliases_remain_usable() {
    let text = "apiVersion: colo/v1\nkind: Policy\ninterference:\n  psi:\n    memory_some: &band {high: 50ms/s, low: 10ms/s}\n    io_full: *band\n";
    let p = parse_policy(&[Source::new("ok.yaml", text)]).unwrap();
    assert_eq!(p.interference.psi.io_full, p.interference.psi.memory_some);
}
