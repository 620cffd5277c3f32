//! Claiming a worker ID in virtual time, with the rules of `runtime::claim`:
//! a preferred ID is created, or taken over once its holder's heartbeat has
//! stood still for a whole heartbeat TTL; otherwise the lowest free ID.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::names::{worker_id, worker_number};
use crate::store::{KvStore, Revision};

/// Where a claim stands.
#[derive(Clone, Debug)]
pub(crate) enum Claim {
    /// Nothing tried yet (or the last try failed at `retry`).
    Start { retry: Instant },
    /// The preferred ID is held at `revision`; taken over at `stale_at` if
    /// it has not moved by then.
    Watching {
        revision: Revision,
        stale_at: Instant,
        next_poll: Instant,
    },
    /// The preferred ID is out of reach: take the lowest free one.
    Lowest { retry: Instant },
}

/// One step of the claim: `Ok(Some((id, revision)))` when the ID is ours.
pub(crate) fn step(
    claim: &mut Claim,
    store: &dyn KvStore,
    config: &Config,
    preferred: Option<&str>,
    value: &[u8],
    now: Instant,
) -> Option<(String, Revision)> {
    let poll = (config.heartbeat_interval / 2).max(Duration::from_millis(5));
    match claim.clone() {
        Claim::Start { retry } | Claim::Lowest { retry } if now < retry => None,
        Claim::Start { .. } => {
            let Some(id) = preferred else {
                *claim = Claim::Lowest { retry: now };
                return step(claim, store, config, None, value, now);
            };
            match store.create(id, value) {
                Ok(rev) => return Some((id.to_string(), rev)),
                Err(e) if e.is_conflict() => {}
                Err(_) => {
                    *claim = Claim::Start { retry: now + poll };
                    return None;
                }
            }
            match store.get(id) {
                Ok(Some(e)) => {
                    *claim = Claim::Watching {
                        revision: e.revision,
                        stale_at: now + config.heartbeat_ttl,
                        next_poll: now + poll,
                    };
                    None
                }
                Ok(None) => match store.create(id, value) {
                    Ok(rev) => Some((id.to_string(), rev)),
                    Err(_) => {
                        *claim = Claim::Lowest { retry: now };
                        None
                    }
                },
                Err(_) => {
                    *claim = Claim::Start { retry: now + poll };
                    None
                }
            }
        }
        Claim::Watching {
            revision,
            stale_at,
            next_poll,
        } => {
            if now < next_poll {
                return None;
            }
            let id = preferred?;
            match store.get(id) {
                Ok(Some(e)) if e.revision == revision => {}
                Ok(_) => {
                    *claim = Claim::Lowest { retry: now };
                    return None;
                }
                Err(_) => {
                    *claim = Claim::Start { retry: now + poll };
                    return None;
                }
            }
            if now < stale_at {
                *claim = Claim::Watching {
                    revision,
                    stale_at,
                    next_poll: now + poll,
                };
                return None;
            }
            match store.update(id, value, revision) {
                Ok(rev) => Some((id.to_string(), rev)),
                Err(_) => {
                    *claim = Claim::Lowest { retry: now };
                    None
                }
            }
        }
        Claim::Lowest { .. } => {
            let retry = Claim::Lowest { retry: now + poll };
            let Ok(keys) = store.keys() else {
                *claim = retry;
                return None;
            };
            let taken: std::collections::BTreeSet<u32> = keys
                .iter()
                .filter_map(|k| worker_number(&config.worker_id_prefix, k))
                .collect();
            for n in (0..config.max_workers).filter(|n| !taken.contains(n)) {
                let id = worker_id(&config.worker_id_prefix, n);
                match store.create(&id, value) {
                    Ok(rev) => return Some((id, rev)),
                    Err(e) if e.is_conflict() => continue,
                    Err(_) => break,
                }
            }
            *claim = retry;
            None
        }
    }
}
