//! Fields left at their default follow the fields the user changed, so that
//! `Config { heartbeat_ttl: 800 ms, ..Config::default() }` does not trip over
//! the default 2 s `operation_timeout`. Only a field equal to its default
//! value and in conflict is derived; explicit values are left for
//! [`check`](super::check) to accept or reject.

use std::time::Duration;

use super::{ratios, Config};

/// `config` with each defaulted field that conflicts with a changed one
/// derived from it (the table in [`Config::resolved`]).
pub(super) fn follow_changed(config: &Config) -> Config {
    let d = Config::default();
    let mut c = config.clone();
    // The heartbeat pair first: every other derived field depends on it.
    if c.heartbeat_ttl < c.heartbeat_interval * 2 {
        // A zero on the changed side is left for the check to name.
        if c.heartbeat_ttl == d.heartbeat_ttl
            && c.heartbeat_interval != d.heartbeat_interval
            && !c.heartbeat_interval.is_zero()
        {
            c.heartbeat_ttl = ratios::ttl_for(c.heartbeat_interval);
        } else if c.heartbeat_interval == d.heartbeat_interval
            && c.heartbeat_ttl != d.heartbeat_ttl
            && !c.heartbeat_ttl.is_zero()
        {
            c.heartbeat_interval = ratios::renew_every(c.heartbeat_ttl);
        }
    }
    if c.worker_id_ttl == d.worker_id_ttl && c.worker_id_ttl < c.heartbeat_ttl {
        c.worker_id_ttl = c.heartbeat_ttl * 5;
    }
    let shortest_ttl = c.heartbeat_ttl.min(c.election_ttl);
    if c.operation_timeout == d.operation_timeout && c.operation_timeout * 2 > shortest_ttl {
        c.operation_timeout = (shortest_ttl / 3).max(Duration::from_millis(1));
    }
    c
}
