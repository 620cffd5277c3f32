//! A custom placement strategy: partitions whose id starts with `vip.` go to
//! the lowest-numbered workers first, the rest are spread with the built-in
//! `BoundedLoad` strategy. Runs offline (no NATS needed): it prints the
//! placement for 3 and then 4 workers and how many partitions moved.
//!
//! Plug it into a group with `Manager::builder(nc, group).strategy(VipFirst::default())`.
//!
//! ```text
//! cargo run --example custom_strategy
//! ```

use std::collections::BTreeSet;

use parti::strategy::{moved, AssignmentStrategy, BoundedLoad};
use parti::{Error, Partition, Placement};

/// VIP partitions are dealt round-robin over the workers in id order,
/// sticky: a VIP partition stays where it was while its worker is present.
#[derive(Default)]
struct VipFirst {
    rest: BoundedLoad,
}

impl AssignmentStrategy for VipFirst {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        // Sorted and deduplicated: the result must not depend on input order.
        let workers: Vec<String> = workers
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if workers.is_empty() {
            return Err(Error::NoWorkers);
        }
        let (vip, rest): (Vec<Partition>, Vec<Partition>) = partitions
            .iter()
            .cloned()
            .partition(|p| p.id().starts_with("vip."));
        let mut placement = self.rest.assign(&workers, &rest, previous)?;
        let mut vip = vip;
        vip.sort();
        let mut next = 0;
        for p in vip {
            let kept = previous
                .iter()
                .find(|(w, ps)| workers.contains(w) && ps.iter().any(|q| q.id() == p.id()))
                .map(|(w, _)| w.clone());
            let owner = kept.unwrap_or_else(|| {
                let w = workers[next % workers.len()].clone();
                next += 1;
                w
            });
            placement.entry(owner).or_default().push(p);
        }
        for ps in placement.values_mut() {
            ps.sort_by(|a, b| a.id().cmp(b.id()));
        }
        Ok(placement)
    }
}

fn main() -> Result<(), Error> {
    let partitions: Vec<Partition> = (0..4)
        .map(|i| Partition::new(format!("vip.{i}")))
        .chain((0..20).map(|i| Partition::new(format!("std.{i}"))))
        .collect();
    let strategy = VipFirst::default();
    let three: Vec<String> = (0..3).map(|i| format!("worker-{i}")).collect();
    let before = strategy.assign(&three, &partitions, &Placement::new())?;
    let four: Vec<String> = (0..4).map(|i| format!("worker-{i}")).collect();
    let after = strategy.assign(&four, &partitions, &before)?;
    for (name, placement) in [("3 workers", &before), ("4 workers", &after)] {
        println!("{name}:");
        for (w, ps) in placement {
            println!("  {w}: {:?}", ps.iter().map(|p| p.id()).collect::<Vec<_>>());
        }
    }
    println!("moved on 3 -> 4: {}", moved(&before, &after));
    Ok(())
}
