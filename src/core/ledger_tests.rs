//! Unit tests of `ledger.rs`.

use super::*;

fn addr(i: &str) -> Addressee {
    Addressee {
        instance: i.into(),
        incarnation: 0,
    }
}

fn placement(pairs: &[(&str, &[&str])]) -> Placement {
    pairs
        .iter()
        .map(|(w, ps)| {
            (
                w.to_string(),
                ps.iter().map(|p| Partition::new(*p)).collect(),
            )
        })
        .collect()
}

fn ids(w: &KeyWrite) -> Vec<&str> {
    w.partitions.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn revoke_then_grant_after_ack() {
    let mut l = Ledger::default();
    let who: BTreeMap<_, _> = [("a".to_string(), addr("ia")), ("b".to_string(), addr("ib"))].into();
    let w = l.step(&placement(&[("a", &["1", "2"]), ("b", &[])]), &who, 1);
    assert_eq!(w.len(), 2, "both get a first key");
    // Move 2 from a to b: first only the revocation.
    let target = placement(&[("a", &["1"]), ("b", &["2"])]);
    let w = l.step(&target, &who, 2);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].worker, "a");
    assert_eq!(ids(&w[0]), ["1"]);
    // Nothing more until a acknowledges version 2.
    assert!(l.step(&target, &who, 3).is_empty());
    l.observe("a", &addr("ia"), 1);
    assert!(l.step(&target, &who, 3).is_empty());
    l.observe("a", &addr("ia"), 2);
    let w = l.step(&target, &who, 3);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].worker, "b");
    assert_eq!(w[0].partitions[0].token, 3, "token is the granting version");
}

#[test]
fn dead_worker_frees_its_partitions() {
    let mut l = Ledger::default();
    let who: BTreeMap<_, _> = [("a".to_string(), addr("ia")), ("b".to_string(), addr("ib"))].into();
    l.step(&placement(&[("a", &["1"]), ("b", &["2"])]), &who, 1);
    let survivors: BTreeMap<_, _> = [("b".to_string(), addr("ib"))].into();
    let target = placement(&[("b", &["1", "2"])]);
    assert!(
        l.step(&target, &survivors, 2).is_empty(),
        "a may still hold 1"
    );
    l.forget("a");
    let w = l.step(&target, &survivors, 2);
    assert_eq!(ids(&w[0]), ["1", "2"]);
    assert_eq!(
        w[0].partitions[1].token, 1,
        "unmoved partition keeps its token"
    );
}

#[test]
fn adopted_unacked_worker_blocks_orphans() {
    let mut l = Ledger::default();
    let rec = AssignmentRecord {
        version: 5,
        epoch: 1,
        reason: crate::RebalanceKind::PlannedScale,
        instance: "ia".into(),
        incarnation: 0,
        partitions: vec![],
        incoming: vec![],
    };
    l.adopt("a", &rec, false);
    let who: BTreeMap<_, _> = [("a".to_string(), addr("ia")), ("b".to_string(), addr("ib"))].into();
    let target = placement(&[("a", &[]), ("b", &["9"])]);
    let w = l.step(&target, &who, 6);
    assert!(
        w.iter().all(|w| w.partitions.is_empty()),
        "9 may still run on a"
    );
    l.observe("a", &addr("ia"), 5);
    let w = l.step(&target, &who, 7);
    assert_eq!(ids(&w[0]), ["9"]);
}

#[test]
fn a_suspect_that_is_to_hold_nothing_is_written_to_and_then_unblocks() {
    let mut l = Ledger::default();
    // `a` applied a version the store has no record of (its record was
    // lost or unreadable); it is drained: not in the target at all.
    assert!(l.suspect("a", &addr("ia"), 3));
    let who: BTreeMap<_, _> = [("a".to_string(), addr("ia")), ("b".to_string(), addr("ib"))].into();
    let target = placement(&[("b", &["9"])]);
    let w = l.step(&target, &who, 6);
    assert!(
        w.iter().all(|w| w.partitions.is_empty()),
        "9 may still run on a"
    );
    assert!(
        w.iter().any(|w| w.worker == "a"),
        "a must be told a version to apply: {w:?}"
    );
    l.observe("a", &addr("ia"), 6);
    let w = l.step(&target, &who, 7);
    assert_eq!(ids(&w[0]), ["9"]);
}

/// The index answers as asking every key would, through grants,
/// revocations, acknowledgements and a new incarnation.
#[test]
fn the_holders_index_agrees_with_every_key() {
    let mut l = Ledger::default();
    let rec = AssignmentRecord {
        version: 1,
        epoch: 1,
        reason: crate::RebalanceKind::Takeover,
        instance: "ic".into(),
        incarnation: 0,
        partitions: vec![],
        incoming: vec![],
    };
    l.adopt("c", &rec, false);
    let mut who: BTreeMap<_, _> = [
        ("a".to_string(), addr("ia")),
        ("b".to_string(), addr("ib")),
        ("c".to_string(), addr("ic")),
    ]
    .into();
    let ids = ["1", "2", "3", "4", "5"];
    let targets = [
        placement(&[("a", &["1", "2", "3"]), ("b", &["4", "5"]), ("c", &[])]),
        placement(&[("a", &["1"]), ("b", &["2", "3"]), ("c", &["4", "5"])]),
        placement(&[("a", &["4", "5"]), ("b", &["1"]), ("c", &["2", "3"])]),
    ];
    for (v, target) in (2..).zip(targets.iter().cycle().take(9)) {
        let h = Holders::of(&l.keys);
        for w in who.keys() {
            for id in ids {
                let brute = l.keys.iter().all(|(o, k)| o == w || !k.may_hold(id));
                assert_eq!(h.free_for(w, id), brute, "{w} {id} at v{v}");
            }
        }
        l.step(target, &who, v);
        if v % 2 == 0 {
            l.observe("a", &addr("ia"), v);
        }
        l.observe("c", &addr("ic"), v - 1);
        if v == 6 {
            let fresh = Addressee {
                instance: "ib".into(),
                incarnation: 1,
            };
            who.insert("b".into(), fresh);
        }
    }
}

#[test]
fn new_incarnation_gets_a_fresh_key_with_new_tokens() {
    let mut l = Ledger::default();
    let who: BTreeMap<_, _> = [("a".to_string(), addr("ia"))].into();
    let target = placement(&[("a", &["1"])]);
    l.step(&target, &who, 1);
    let fresh = Addressee {
        instance: "ia".into(),
        incarnation: 1,
    };
    l.observe("a", &fresh, 1);
    let who: BTreeMap<_, _> = [("a".to_string(), fresh.clone())].into();
    let w = l.step(&target, &who, 2);
    assert_eq!(w[0].addressee, fresh);
    assert_eq!(w[0].partitions[0].token, 2);
}
