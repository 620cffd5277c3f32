//! Placement strategies: which worker gets which partitions.

use crate::{Error, Partition, Placement};

/// Computes a placement of `partitions` over `workers`.
pub trait AssignmentStrategy: Send + Sync {
    /// `previous` is the placement currently in force (empty on cold start);
    /// sticky strategies use it to move as little as possible.
    ///
    /// Every partition must be placed exactly once, on one of `workers`, and
    /// the result must not depend on the order of `workers` or `partitions`.
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error>;
}

/// The strategy a manager uses when none is given.
pub(crate) fn default_strategy() -> impl AssignmentStrategy {
    fallback::EvenSticky
}

mod fallback {
    //! Temporary default until the bounded-load strategy lands.
    use super::*;

    pub struct EvenSticky;

    impl AssignmentStrategy for EvenSticky {
        fn assign(&self, workers: &[String], partitions: &[Partition], previous: &Placement) -> Result<Placement, Error> {
            let mut workers: Vec<String> = workers.to_vec();
            workers.sort();
            workers.dedup();
            if workers.is_empty() {
                return Err(Error::NoWorkers);
            }
            let mut parts: Vec<Partition> = partitions.to_vec();
            parts.sort();
            let n = workers.len();
            let base = parts.len() / n;
            let extra = parts.len() % n;
            let cap = |i: usize| base + usize::from(i < extra);
            let mut out: Placement = workers.iter().map(|w| (w.clone(), Vec::new())).collect();
            let mut rest = Vec::new();
            for p in parts {
                let owner = previous.iter().find(|(_, ps)| ps.iter().any(|q| q.id() == p.id())).map(|(w, _)| w.clone());
                let slot = owner.and_then(|w| workers.iter().position(|x| *x == w).map(|i| (w, i)));
                match slot {
                    Some((w, i)) if out[&w].len() < cap(i) => out.get_mut(&w).map(|v| v.push(p)).unwrap_or(()),
                    _ => rest.push(p),
                }
            }
            for p in rest {
                let i = (0..n).find(|i| out[&workers[*i]].len() < cap(*i)).unwrap_or(0);
                if let Some(v) = out.get_mut(&workers[i]) {
                    v.push(p);
                }
            }
            Ok(out)
        }
    }
}
