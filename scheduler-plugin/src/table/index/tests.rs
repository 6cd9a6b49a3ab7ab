//! Unit tests of the placement index.

use colo_policy::scoring::{AdmissionParams, NodeScoreParams, filter_node, node_score};

use super::*;

fn state(cpu: u64) -> NodeState {
    let mut state = NodeState::default();
    state.capacity.cpu_millicores = cpu;
    state
}

fn insert(ix: &mut Index, name: &str, cpu: u64) -> Option<usize> {
    let s = state(cpu);
    ix.insert(name, s, Record::new(&s, Admission::Accepting, 0, true))
}

fn name<'a>(ix: &'a Index, r: &Record) -> &'a str {
    std::str::from_utf8(ix.name_of(r)).unwrap()
}

#[test]
fn finds_every_name_through_growth_and_batches() {
    assert_eq!(std::mem::size_of::<Record>(), 64);
    let mut ix = Index::new(NameHash { seed: 3 });
    let long = |i: usize| format!("gke-cluster-default-pool-{i:08}-long-name");
    let name_of = |i: usize| match i % 4 {
        0 => long(i),
        1 => format!("n{i}"),
        _ => format!("node-{i:05}"),
    };
    for i in 0..3_000usize {
        assert_eq!(insert(&mut ix, &name_of(i), i as u64), Some(i));
    }
    assert!(ix.slots.len() >= 6_000);
    let mut names: Vec<String> = (0..3_000).map(name_of).collect();
    names.push("node-03000".into());
    names.push(String::new());
    names.push("n1".into());
    names.push("node-0000".into());
    names.push("node-000020".into());
    let mut seen = 0;
    ix.lookup_each(&names[..], |i, r| {
        assert_eq!(i, seen);
        seen += 1;
        assert_eq!(
            r.map(|r| name(&ix, r)),
            ix.find(&names[i]).map(|p| name(&ix, &ix.records[p]))
        );
        match i {
            3_000 | 3_001 | 3_003 | 3_004 => assert!(r.is_none(), "{}", names[i]),
            3_002 => assert_eq!(r.unwrap().place.capacity.cpu_millicores, 1),
            _ => {
                assert_eq!(r.unwrap().place.capacity.cpu_millicores, i as u64);
                assert_eq!(name(&ix, r.unwrap()), names[i]);
            }
        }
    });
    assert_eq!(seen, names.len());
    assert_eq!(ix.len(), 3_000);
    assert_eq!(ix.snapshot(7, 0).state.capacity.cpu_millicores, 7);
}

#[test]
fn removals_keep_every_other_name_reachable() {
    let mut ix = Index::new(NameHash { seed: 11 });
    let name_of = |i: u64| format!("node-{i:05}");
    for i in 0..2_000 {
        insert(&mut ix, &name_of(i), i);
    }
    // Remove two in three, in an order that shifts runs of every length.
    let mut live: Vec<u64> = (0..2_000).collect();
    for i in (0..2_000).rev().filter(|i| i % 3 != 0) {
        assert!(ix.remove(&name_of(i)), "{i}");
        assert!(!ix.remove(&name_of(i)), "{i} twice");
        live.retain(|l| *l != i);
    }
    assert_eq!(ix.len(), live.len());
    for i in 0..2_000 {
        let found = ix
            .find(&name_of(i))
            .map(|r| ix.records[r].place.capacity.cpu_millicores);
        assert_eq!(found, (i % 3 == 0).then_some(i), "{i}");
    }
    assert!(ix.garbage * 2 <= ix.names.len(), "names were repacked");
    assert!(ix.names.len() <= 2 * live.len() * name_of(0).len());
    // Slots left behind by removals are reused, and the index still answers in batches.
    for i in 2_000..3_000 {
        insert(&mut ix, &name_of(i), i);
    }
    let names: Vec<String> = (0..3_000).map(name_of).collect();
    ix.lookup_each(&names[..], |i, r| {
        let want = (i >= 2_000 || i % 3 == 0).then_some(i as u64);
        assert_eq!(r.map(|r| r.place.capacity.cpu_millicores), want, "{i}");
        if let Some(r) = r {
            assert_eq!(name(&ix, r), names[i]);
        }
    });
    for i in 0..3_000 {
        ix.remove(&name_of(i));
    }
    assert_eq!(ix.len(), 0);
    assert!(ix.slots.iter().all(|s| *s == 0));
    assert!(ix.names.is_empty());
}

#[test]
fn names_compare_by_every_byte() {
    for n in 0..40 {
        let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(same_name(&a, &a.clone()));
        for k in 0..n {
            let mut b = a.clone();
            b[k] ^= 1;
            assert!(!same_name(&a, &b), "{n} {k}");
        }
        let mut longer = a.clone();
        longer.push(b'z');
        assert!(!same_name(&a, &longer));
    }
}

#[test]
fn ages_count_across_the_clocks_epoch() {
    let c = Clock::new();
    let now = Instant::now();
    let Some(before) = now.checked_sub(Duration::from_secs(100)) else {
        return;
    };
    let s = state(1);
    let old = Record::new(&s, Admission::Accepting, c.at(before), true);
    assert_eq!(old.age(c.at(now)), Duration::from_secs(100));
    let new = Record::new(&s, Admission::Accepting, c.at(now), true);
    assert_eq!(new.age(c.at(before)), Duration::ZERO);
}

#[test]
fn same_tag_names_are_told_apart() {
    let mut ix = Index::new(NameHash { seed: 0 });
    for i in 0..31 {
        insert(&mut ix, &format!("n{i}"), i);
    }
    // Give every slot the tag of "n5": its lookup then meets other nodes' slots first and
    // must tell them apart by name.
    let t = tag(ix.hash.of(b"n5"));
    for s in &mut ix.slots {
        if *s != 0 {
            *s = (t << 24) | (*s & 0x00ff_ffff);
        }
    }
    let names = ["n5", "n5", "missing"];
    let mut found = Vec::new();
    ix.lookup_each(&names[..], |_, r| {
        found.push(r.map(|r| r.place.capacity.cpu_millicores));
    });
    assert_eq!(found, [Some(5), Some(5), None]);
    assert_eq!(ix.find("n5"), Some(5));
}

#[test]
fn the_placement_view_decides_as_the_full_state() {
    const GIB: u64 = 1 << 30;
    let admission = AdmissionParams::default();
    let scoring = NodeScoreParams::default();
    let mut n = 0;
    for cap in [0, 4_000, 16_000] {
        for reclaim in [0, 900, 1_000, 3_000, 12_000, 20_000] {
            for offline in [0, 100, 2_000, 15_000, 30_000] {
                for mem in [0, GIB, 2 * GIB, 48 * GIB] {
                    for score in [0.0, 12.5, 49.9, 70.0, 85.0, 100.0, 130.0, -5.0, f64::NAN] {
                        let full = NodeState {
                            capacity: Resources::new(cap, 64 * GIB),
                            reclaimable: Resources::new(reclaim, mem),
                            offline_usage: Resources::new(offline, mem / 3),
                            interference: score,
                        };
                        let compact = Placement::of(&full).node_state();
                        for req in [Resources::new(1_000, 2 * GIB), Resources::ZERO] {
                            for adm in [Admission::Accepting, Admission::Refusing] {
                                assert_eq!(
                                    filter_node(&full, adm, req, &admission),
                                    filter_node(&compact, adm, req, &admission),
                                    "{full:?}"
                                );
                            }
                            assert_eq!(
                                node_score(&full, req, &scoring),
                                node_score(&compact, req, &scoring),
                                "{full:?}"
                            );
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(n > 1_000);
}
