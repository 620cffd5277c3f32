//! Shared steps of the tests in which the store forgets (buckets deleted,
//! the server back on an empty or an older store): a group that has been
//! through a leader change, and what the JetStream API says of its streams.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

use std::time::Duration;

use parti::Config;

use super::{recorded_reports, recorded_settled, start_recorded, Recorded};
use crate::support::wait_until;

/// How many partitions these groups share.
pub const N: usize = 16;

/// A JetStream API request (`api` without the `$JS.API.` prefix).
pub fn js(url: &str, api: &str) -> serde_json::Value {
    let nc = nats::connect(url).expect("connect");
    let reply = nc
        .request_timeout(&format!("$JS.API.{api}"), b"", Duration::from_secs(2))
        .expect("JetStream API");
    serde_json::from_slice(&reply.data).expect("json")
}

/// The stream's creation time, `None` while it does not exist.
pub fn created(url: &str, stream: &str) -> Option<String> {
    let v = js(url, &format!("STREAM.INFO.{stream}"));
    v["created"].as_str().map(str::to_string)
}

pub fn describe(ms: &[Recorded]) -> String {
    ms.iter()
        .zip(recorded_reports(ms))
        .map(|(r, (label, ps))| {
            let h = r.manager.health();
            let leader = if h.is_leader { " leader" } else { "" };
            format!("{label} {:?}{leader} {ps:?}", h.state)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The bound docs/operations.md states: once the store answers again,
/// every partition is owned again within election TTL + heartbeat TTL +
/// emergency grace + one planned window.
pub fn store_bound(config: &Config) -> Duration {
    config.election_ttl
        + config.heartbeat_ttl
        + config.emergency_grace
        + config.planned_scale_window
}

/// Stops the group's current leader; returns it, for the ledger.
pub fn stop_the_leader(ms: &mut Vec<Recorded>) -> Recorded {
    let leader = ms
        .iter()
        .position(|r| r.manager.is_leader())
        .expect("a leader");
    let gone = ms.remove(leader);
    gone.manager.stop().expect("stop the leader");
    gone
}

/// Four busy workers that have been through a leader change (the first
/// leader stopped, a fifth joined): epochs and revisions then stand above
/// those a new bucket starts from, and workers remember them. Returns the
/// running managers and the stopped one (for the ledger).
pub fn group_after_a_leader_change(
    url: &str,
    group: &str,
    config: &Config,
) -> (Vec<Recorded>, Recorded) {
    let _ = env_logger::builder()
        .is_test(true)
        .parse_filters("parti=info")
        .try_init();
    let mut ms: Vec<Recorded> = (0..4)
        .map(|i| start_recorded(url, group, N, config, i > 0))
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || recorded_settled(&ms, N)),
        "{}",
        describe(&ms)
    );
    let first = ms.remove(0);
    first.manager.stop().expect("stop the first leader");
    ms.push(start_recorded(url, group, N, config, true));
    assert!(
        wait_until(Duration::from_secs(20), || recorded_settled(&ms, N)),
        "{}",
        describe(&ms)
    );
    (ms, first)
}
