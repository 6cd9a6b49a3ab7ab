//! Unit tests of the node table.

use super::name::INLINE_NAME;
use super::*;

fn report(name: &str, seq: u64, start: i64, score: f64) -> NodeReport {
    NodeReport {
        node_name: name.into(),
        seq,
        agent_start_unix_ms: start,
        capacity: Some(report::Resources {
            cpu_millicores: 8_000,
            memory_bytes: 32 << 30,
        }),
        reclaimable: Some(report::Resources {
            cpu_millicores: 4_000,
            memory_bytes: 16 << 30,
        }),
        interference: Some(report::Interference {
            score,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stored(missed: u64) -> Ingested {
    Ingested::Stored {
        missed,
        agent_restarted: false,
    }
}

#[test]
fn sequence_rules() {
    let t = NodeTable::new(AdmissionParams::default());
    let now = Instant::now();
    let ingest = |seq, start| t.ingest(report("n1", seq, start, 10.0), now).unwrap();
    assert_eq!(
        ingest(5, 100).ingested,
        stored(0),
        "first sight counts no gap"
    );
    assert_eq!(ingest(6, 100).ingested, stored(0));
    let dup = ingest(6, 100);
    assert_eq!(dup.ingested, Ingested::Ignored);
    assert_eq!(dup.ack_seq, 6);
    assert_eq!(ingest(4, 100).ingested, Ingested::Ignored);
    assert_eq!(ingest(9, 100).ingested, stored(2));
    assert_eq!(t.sequence("n1"), Some((9, 2)));
    let restart = ingest(1, 200);
    assert_eq!(
        restart.ingested,
        Ingested::Stored {
            missed: 0,
            agent_restarted: true
        }
    );
    assert_eq!(restart.ack_seq, 1);
    assert_eq!(
        ingest(10, 100).ingested,
        Ingested::Ignored,
        "older incarnation"
    );
    assert_eq!(t.sequence("n1"), Some((1, 2)));
}

#[test]
fn empty_name_is_refused() {
    let t = NodeTable::new(AdmissionParams::default());
    let err = t.ingest(report("", 3, 0, 0.0), Instant::now()).unwrap_err();
    assert_eq!(err, IngestError::EmptyNodeName { seq: 3 });
    assert!(err.to_string().contains("empty node_name"));
}

#[test]
fn admission_has_hysteresis_across_reports() {
    let t = NodeTable::new(AdmissionParams::default());
    let now = Instant::now();
    let mut seq = 0;
    let mut adm = |score| {
        seq += 1;
        t.ingest(report("n", seq, 1, score), now).unwrap();
        t.lookup("n", now).unwrap().admission
    };
    assert_eq!(adm(20.0), Admission::Accepting);
    assert_eq!(adm(75.0), Admission::Refusing);
    assert_eq!(adm(60.0), Admission::Refusing);
    assert_eq!(adm(45.0), Admission::Accepting);
    let t2 = NodeTable::new(AdmissionParams::default());
    t2.ingest(report("hot", 1, 1, 90.0), now).unwrap();
    assert_eq!(
        t2.lookup("hot", now).unwrap().admission,
        Admission::Refusing
    );
}

#[test]
fn age_and_counts_follow_the_callers_clock() {
    let t = NodeTable::new(AdmissionParams::default());
    let t0 = Instant::now();
    t.ingest(report("a", 1, 1, 0.0), t0).unwrap();
    t.ingest(report("b", 1, 1, 0.0), t0 + Duration::from_secs(100))
        .unwrap();
    let later = t0 + Duration::from_secs(200);
    assert_eq!(t.lookup("a", later).unwrap().age, Duration::from_secs(200));
    assert_eq!(t.counts(later, Duration::from_secs(180)), (2, 1));
    assert!(t.lookup("zzz", later).is_none());
    let mut names = Vec::new();
    t.for_each(later, |n, _, _| names.push(n.to_owned()));
    names.sort();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn the_view_sees_what_lookup_sees() {
    let t = NodeTable::new(AdmissionParams::default());
    let now = Instant::now();
    for i in 0..500 {
        t.ingest(report(&format!("node-{i}"), 1, 1, f64::from(i % 100)), now)
            .unwrap();
    }
    let v = t.view();
    for i in 0..500 {
        let name = format!("node-{i}");
        assert_eq!(v.lookup(&name, now), t.lookup(&name, now), "{name}");
        assert!(v.lookup(&name, now).is_some());
    }
    assert!(v.lookup("node-500", now).is_none());
    let used = t
        .shards
        .iter()
        .filter(|s| !s.read().unwrap().is_empty())
        .count();
    assert!(
        used > 50,
        "names spread over the shards: {used} of {SHARDS}"
    );
}

#[test]
fn short_and_long_names_are_keys_alike() {
    let t = NodeTable::new(AdmissionParams::default());
    let now = Instant::now();
    let long = "n".repeat(INLINE_NAME + 1);
    let edge = "é".repeat(INLINE_NAME / 2);
    for name in ["a", edge.as_str(), long.as_str()] {
        t.ingest(report(name, 1, 1, 0.0), now).unwrap();
        assert!(t.lookup(name, now).is_some(), "{name}");
        assert_eq!(NameKey::new(name).as_str(), name);
    }
    assert!(matches!(NameKey::new(&edge), NameKey::Inline { .. }));
    assert!(matches!(NameKey::new(&long), NameKey::Heap(_)));
    assert!(t.lookup(&long[1..], now).is_none());
    assert_eq!(format!("{:?}", NameKey::new("x")), "\"x\"");
    assert_eq!(std::mem::size_of::<NameKey>(), 32);
}

#[test]
fn index_hash_separates_similar_names() {
    let h = NameHash { seed: 7 };
    let mut seen = std::collections::HashSet::new();
    for i in 0..20_000 {
        assert!(seen.insert(h.of(format!("node-{i:05}").as_bytes())));
        assert!(seen.insert(h.of(format!("gke-pool-{i}-a-much-longer-node-name").as_bytes())));
    }
    assert_ne!(h.of(b"ab"), h.of(b"ab\0"));
    assert_ne!(h.of(b""), h.of(b"\0"));
    for len in 1..=40 {
        let base = vec![b'x'; len];
        for i in 0..len {
            let mut other = base.clone();
            other[i] = b'y';
            assert_ne!(h.of(&base), h.of(&other), "{len} {i}");
        }
    }
    // The low bits (the slot) spread: 5,000 sequential names over 8,192 slots.
    let slots: std::collections::HashSet<u64> = (0..5_000)
        .map(|i| h.of(format!("node-{i:05}").as_bytes()) & 8_191)
        .collect();
    assert!(slots.len() > 3_500, "{}", slots.len());
    assert_ne!(NameHash { seed: 8 }.of(b"node-1"), h.of(b"node-1"));
}

#[test]
fn name_hash_separates_similar_names() {
    let h = NameHash { seed: 7 };
    let mut seen = std::collections::HashSet::new();
    for i in 0..10_000 {
        assert!(seen.insert(h.hash_one(format!("node-{i:05}"))));
    }
    assert_ne!(h.hash_one("ab"), h.hash_one("ab\0"));
    // Tails of every length, differing in one byte at every position.
    for len in 1..=16 {
        let base = "x".repeat(len);
        for i in 0..len {
            let mut other = base.clone().into_bytes();
            other[i] = b'y';
            let other = String::from_utf8(other).unwrap();
            assert_ne!(h.hash_one(&base), h.hash_one(&other), "{len} {i}");
        }
    }
    assert_ne!(h.hash_one(""), h.hash_one("\0"));
}

#[test]
fn a_full_table_refuses_new_nodes_only() {
    let t = NodeTable::with_max_nodes(AdmissionParams::default(), 3);
    let now = Instant::now();
    for n in ["a", "b", "c"] {
        t.ingest(report(n, 1, 1, 0.0), now).unwrap();
    }
    let err = t.ingest(report("d", 1, 1, 0.0), now).unwrap_err();
    assert_eq!(err, IngestError::TableFull { max: 3 });
    assert!(err.to_string().contains("--max-nodes"), "{err}");
    assert!(t.lookup("d", now).is_none());
    assert!(t.sequence("d").is_none());
    // Known nodes keep reporting.
    assert_eq!(t.ingest(report("a", 2, 1, 0.0), now).unwrap().ack_seq, 2);
    assert_eq!(t.counts(now, Duration::from_secs(1)), (3, 0));
}

#[test]
fn nodes_that_stop_reporting_are_forgotten() {
    let t = NodeTable::with_max_nodes(AdmissionParams::default(), 100);
    let t0 = Instant::now();
    for i in 0..100 {
        let at = t0 + Duration::from_secs(if i % 2 == 0 { 0 } else { 50 });
        t.ingest(report(&format!("n{i}"), 1, 1, f64::from(i)), at)
            .unwrap();
    }
    assert!(t.ingest(report("late", 1, 1, 0.0), t0).is_err());
    let later = t0 + Duration::from_secs(100);
    assert_eq!(t.forget_older_than(later, Duration::from_secs(100)), 0);
    assert_eq!(t.forget_older_than(later, Duration::from_secs(60)), 50);
    assert_eq!(t.counts(later, Duration::from_secs(180)), (50, 0));
    for i in 0..100 {
        let name = format!("n{i}");
        let seen = t.lookup(&name, later);
        assert_eq!(seen.is_some(), i % 2 == 1, "{name}");
        if let Some(s) = seen {
            assert_eq!(
                s.state.interference,
                f64::from(i),
                "{name} kept its own state"
            );
            assert_eq!(s.age, Duration::from_secs(50));
        }
        assert_eq!(t.sequence(&name).is_some(), i % 2 == 1, "{name}");
    }
    // Room again; a forgotten node that comes back starts afresh.
    t.ingest(report("late", 1, 1, 0.0), later).unwrap();
    assert_eq!(t.ingest(report("n0", 9, 1, 0.0), later).unwrap().ack_seq, 9);
    assert_eq!(t.sequence("n0"), Some((9, 0)));
    // Reports keep flowing to the nodes that stayed.
    assert_eq!(t.ingest(report("n1", 2, 1, 5.0), later).unwrap().ack_seq, 2);
    assert_eq!(t.lookup("n1", later).unwrap().age, Duration::ZERO);
}

#[test]
fn pages_walk_the_names_in_order() {
    let t = NodeTable::new(AdmissionParams::default());
    let now = Instant::now();
    let mut want: Vec<String> = (0..1_234)
        .map(|i| format!("node-{:04}", (i * 7) % 1_234))
        .collect();
    for n in &want {
        t.ingest(report(n, 3, 1, 0.0), now).unwrap();
    }
    want.sort();
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = t.page(after.as_deref(), 100, now);
        assert!(page.len() <= 100);
        got.extend(page.iter().map(|(r, _)| r.node_name.clone()));
        assert!(
            page.iter()
                .all(|(r, s)| r.seq == 3 && s.age == Duration::ZERO)
        );
        if !more {
            break;
        }
        after = got.last().cloned();
    }
    assert_eq!(got, want);
    let (page, more) = t.page(Some("node-1233"), 10, now);
    assert!(page.is_empty() && !more);
    let (page, more) = t.page(None, 1_234, now);
    assert_eq!(page.len(), 1_234);
    assert!(!more);
}

#[test]
fn missing_interference_counts_as_severe() {
    let t = NodeTable::new(AdmissionParams::default());
    let now = Instant::now();
    let mut r = report("n", 1, 1, 0.0);
    r.interference = None;
    t.ingest(r, now).unwrap();
    assert_eq!(t.lookup("n", now).unwrap().admission, Admission::Refusing);
}
