//! Taking office: read every published key, re-stamp each with this term's
//! epoch (a compare-and-set on the revision just read, so a write the
//! previous leader still has on the wire fails instead of landing after this
//! leader decided on what it read), then adopt what was published.

use crate::core::ops::{Bucket, Op, Reply};
use crate::names::META_KEY;
use crate::store::KvError;
use crate::wire::{self, AssignmentRecord, MetaRecord, CONTROL_KEY};

use super::{Adopted, InFlight, LeaderEffect, LeaderNode, Office};

impl LeaderNode {
    /// The next operation of taking office, or `None` when there is none
    /// (then the term is in office, or waits).
    pub(super) fn office_op(&mut self) -> Option<Op> {
        let Office::Read(read) = &mut self.office else {
            return None;
        };
        let bucket = Bucket::Assignments;
        if !read.listed {
            self.in_flight = Some(InFlight::Keys);
            return Some(Op::Keys { bucket });
        }
        if let Some(key) = read.to_read.pop_front() {
            self.in_flight = Some(InFlight::ReadKey(key.clone()));
            return Some(Op::Get { bucket, key });
        }
        if let Some(key) = read.to_stamp.front().cloned() {
            let twin = (read.meta.as_ref())
                .filter(|(m, _)| {
                    key == META_KEY && super::outranked::twin(m, self.epoch, &self.p.id)
                })
                .map(|(m, _)| m.leader.clone());
            if let Some(leader) = twin {
                // Another term under this epoch: read again after a pause,
                // until the lease tells which term holds it.
                self.twin_found(&leader);
                self.fence = crate::core::fence::Fence::new(self.epoch);
                self.office = Office::Retry(self.now + self.retry_every());
                return None;
            }
            let stamped = if key == META_KEY {
                read.meta.as_ref().map(|(m, rev)| {
                    (
                        wire::encode(&self.fence.restamped_meta(m, &self.p.id)),
                        *rev,
                    )
                })
            } else {
                match read.records.get(&key) {
                    Some((r, rev)) => match self.fence.restamped(r) {
                        Some(stamped) => Some((wire::encode(&stamped), *rev)),
                        None => {
                            // Read again after a pause, until the lease
                            // tells whether that leader exists.
                            let epoch = r.epoch;
                            self.outranked_by(epoch);
                            self.fence = crate::core::fence::Fence::new(self.epoch);
                            self.office = Office::Retry(self.now + self.retry_every());
                            return None;
                        }
                    },
                    None => None,
                }
            };
            let (value, revision) = stamped?;
            self.in_flight = Some(InFlight::Restamp(key.clone()));
            return Some(Op::Update {
                bucket,
                key,
                value,
                revision,
            });
        }
        self.adopt();
        None
    }

    /// The answer to an operation of taking office.
    pub(super) fn office_reply(&mut self, flight: InFlight, reply: Reply) {
        if let Some(e) = reply.error() {
            let e = e.clone();
            return self.office_failed(e);
        }
        let Office::Read(read) = &mut self.office else {
            return;
        };
        match (flight, reply) {
            (InFlight::Keys, Reply::Keys(Ok(keys))) => {
                read.listed = true;
                read.to_read = keys.into();
            }
            // A key deleted meanwhile is simply absent; a corrupt one is
            // reported and left for the first write to replace.
            (InFlight::ReadKey(_), Reply::Entry(Ok(None))) => {}
            (InFlight::ReadKey(key), Reply::Entry(Ok(Some(entry)))) if key == CONTROL_KEY => {
                self.control_read_in_office(&entry)
            }
            (InFlight::ReadKey(key), Reply::Entry(Ok(Some(entry)))) => {
                let bucket = &self.p.buckets.1;
                if key == META_KEY {
                    match wire::decode::<MetaRecord>(bucket, &key, &entry.value) {
                        Ok(m) => {
                            read.meta = Some((m, entry.revision));
                            read.to_stamp.push_back(key);
                        }
                        Err(e) => self.effects.push_back(LeaderEffect::Report(e)),
                    }
                } else {
                    match wire::decode::<AssignmentRecord>(bucket, &key, &entry.value) {
                        Ok(r) => {
                            read.records.insert(key.clone(), (r, entry.revision));
                            read.to_stamp.push_back(key);
                        }
                        Err(e) => self.effects.push_back(LeaderEffect::Report(e)),
                    }
                }
            }
            (InFlight::Restamp(key), Reply::Written(Ok(rev))) => {
                read.to_stamp.pop_front();
                if key == META_KEY {
                    if let Some((m, r)) = &mut read.meta {
                        *m = self.fence.restamped_meta(m, &self.p.id);
                        *r = rev;
                    }
                } else if let Some((rec, r)) = read.records.get_mut(&key) {
                    if let Some(stamped) = self.fence.restamped(rec) {
                        *rec = stamped;
                    }
                    *r = rev;
                }
                self.fence.learn(&key, Some(rev));
            }
            (flight, reply) => self.office_failed(KvError::Other(format!(
                "taking office: unexpected reply {reply:?} to {flight:?}"
            ))),
        }
    }

    /// Adopting a partial view would let this leader grant partitions a
    /// worker whose key it missed still holds: read everything again soon.
    fn office_failed(&mut self, e: KvError) {
        self.effects.push_back(LeaderEffect::Report(e.into()));
        self.fence = crate::core::fence::Fence::new(self.epoch);
        self.office = Office::Retry(self.now + self.retry_every());
    }

    fn adopt(&mut self) {
        let Office::Read(read) = std::mem::replace(&mut self.office, Office::Leading) else {
            return;
        };
        let Some(calc) = self.calc.as_mut() else {
            return;
        };
        let Adopted { records, meta, .. } = *read;
        let records: std::collections::BTreeMap<String, AssignmentRecord> =
            records.into_iter().map(|(k, (r, _))| (k, r)).collect();
        let meta = meta.map(|(m, _)| m);
        self.view.adopt(
            records
                .iter()
                .map(|(k, r)| (k.as_str(), super::publish::ids_of(r))),
        );
        let now = self.now;
        calc.adopt(now, &records, meta.as_ref().map_or(0, |m| m.version));
        if self.replayed {
            calc.forget_unheard();
        }
        if let Some(meta) = &meta {
            calc.adopt_meta(now, meta);
        }
        self.control_adopt();
        let Some(calc) = self.calc.as_ref() else {
            return;
        };
        log::info!(
            "[{}] leading epoch {}: {} workers known, {} assignment keys, version {}",
            self.p.id,
            self.epoch,
            calc.members().len(),
            records.len(),
            calc.version()
        );
        self.effects.push_back(LeaderEffect::InOffice);
    }
}
