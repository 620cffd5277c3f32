//! Golden tests: exact placements pinned so they never change across
//! platforms or releases. A failure here means an upgrade would reshuffle
//! partitions in every running deployment: do not just update the values.

use parti::strategy::{AssignmentStrategy, BoundedLoad, ConsistentHash, RoundRobin};
use parti::{Partition, Placement};
use xxhash_rust::xxh3::xxh3_64;

fn input(n_workers: usize, n_parts: usize) -> (Vec<String>, Vec<Partition>) {
    let ws = (0..n_workers).map(|i| format!("worker-{i}")).collect();
    let ps = (0..n_parts)
        .map(|i| Partition::new(format!("orders.{i}")))
        .collect();
    (ws, ps)
}

/// `worker=id,id;worker=...` for a compact, readable expectation.
fn render(p: &Placement) -> String {
    p.iter()
        .map(|(w, ps)| {
            let ids: Vec<&str> = ps.iter().map(Partition::id).collect();
            format!("{w}={}", ids.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn digest(p: &Placement) -> u64 {
    xxh3_64(render(p).as_bytes())
}

fn cold(s: &dyn AssignmentStrategy, ws: &[String], ps: &[Partition]) -> Placement {
    s.assign(ws, ps, &Placement::new()).unwrap()
}

#[test]
fn golden_small() {
    let (ws, ps) = input(3, 12);
    let got = [
        render(&cold(&ConsistentHash::default(), &ws, &ps)),
        render(&cold(&ConsistentHash::with_virtual_nodes(1), &ws, &ps)),
        render(&cold(&BoundedLoad::default(), &ws, &ps)),
        render(&cold(&RoundRobin, &ws, &ps)),
    ];
    let want = [
        "worker-0=orders.1,orders.10,orders.2,orders.4,orders.6,orders.9;\
         worker-1=orders.0,orders.7,orders.8;worker-2=orders.11,orders.3,orders.5",
        "worker-0=orders.0,orders.1,orders.10,orders.11,orders.2,orders.4,orders.5,orders.6,orders.7,orders.9;\
         worker-1=orders.3,orders.8;worker-2=",
        "worker-0=orders.10,orders.11,orders.2,orders.4;\
         worker-1=orders.0,orders.7,orders.8,orders.9;worker-2=orders.1,orders.3,orders.5,orders.6",
        "worker-0=orders.0,orders.11,orders.4,orders.7;\
         worker-1=orders.1,orders.2,orders.5,orders.8;worker-2=orders.10,orders.3,orders.6,orders.9",
    ];
    assert_eq!(got, want);
}

#[test]
fn golden_large_digest() {
    let (ws, ps) = input(7, 1000);
    let got = [
        digest(&cold(&ConsistentHash::default(), &ws, &ps)),
        digest(&cold(&BoundedLoad::default(), &ws, &ps)),
    ];
    assert_eq!(got, [0x2c04907da41f64fa, 0x9efc950f7ae73e4d]);
}
