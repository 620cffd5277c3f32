//! Claiming a stable worker ID: `<prefix>-<n>`, the lowest free n, or a
//! preferred one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::names::{worker_id, worker_number};
use crate::store::{KvError, KvStore, Revision};
use crate::wire::{self, WorkerRecord};
use crate::{Config, Error};

/// Claims an ID by writing `record` under it. A preferred ID held by another
/// process is taken over only once its heartbeat has been seen standing still
/// for a whole heartbeat TTL (its holder has fenced itself by then).
pub(crate) fn claim(
    store: &dyn KvStore,
    config: &Config,
    preferred: Option<&str>,
    record: &WorkerRecord,
    deadline: Instant,
) -> Result<(String, Revision), Error> {
    let value = wire::encode(record);
    if let Some(id) = preferred {
        match claim_preferred(store, config, id, &value, deadline)? {
            Some(rev) => return Ok((id.to_string(), rev)),
            None => log::info!("preferred worker id {id} is held by a live worker; taking another"),
        }
    }
    let taken: BTreeSet<u32> = store
        .keys()?
        .iter()
        .filter_map(|k| worker_number(&config.worker_id_prefix, k))
        .collect();
    for n in (0..config.max_workers).filter(|n| !taken.contains(n)) {
        let id = worker_id(&config.worker_id_prefix, n);
        match store.create(&id, &value) {
            Ok(rev) => return Ok((id, rev)),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::NoFreeWorkerId {
        max_workers: config.max_workers,
    })
}

fn claim_preferred(
    store: &dyn KvStore,
    config: &Config,
    id: &str,
    value: &[u8],
    deadline: Instant,
) -> Result<Option<Revision>, Error> {
    match store.create(id, value) {
        Ok(rev) => return Ok(Some(rev)),
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e.into()),
    }
    let Some(first) = store.get(id)? else {
        return match store.create(id, value) {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        };
    };
    let stale_at = Instant::now() + config.heartbeat_ttl;
    if stale_at >= deadline {
        return Ok(None);
    }
    let poll = (config.heartbeat_interval / 2).max(Duration::from_millis(5));
    while Instant::now() < stale_at {
        std::thread::sleep(poll.min(stale_at.saturating_duration_since(Instant::now())));
        match store.get(id)? {
            Some(e) if e.revision == first.revision => {}
            _ => return Ok(None),
        }
    }
    match store.update(id, value, first.revision) {
        Ok(rev) => {
            if let Ok(old) = wire::decode::<WorkerRecord>(store.bucket(), id, &first.value) {
                log::info!(
                    "took over stale worker id {id} from instance {}",
                    old.instance
                );
            }
            Ok(Some(rev))
        }
        Err(KvError::RevisionMismatch { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
