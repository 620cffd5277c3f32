//! Timing and sizing knobs, with defaults and validation.

use std::time::Duration;

use crate::Error;

/// How a group behaves: windows, TTLs, timeouts.
///
/// Every field is public; start from [`Config::default`] (or the
/// [`Config::fast`] preset) and override what you need. Fields you leave at
/// their default follow the ones you set where they would conflict (see
/// [`resolved`](Config::resolved)); [`validate`](Config::validate) (also run
/// by `start()`) rejects the combinations that still cannot work with
/// [`Error::InvalidConfig`] naming the field and a value that would fit.
///
/// ```
/// use parti::Config;
/// use std::time::Duration;
/// let config = Config {
///     heartbeat_interval: Duration::from_millis(500),
///     heartbeat_ttl: Duration::from_millis(1500),
///     operation_timeout: Duration::from_millis(500),
///     ..Config::default()
/// };
/// assert!(config.validate().is_ok());
/// let bad = Config { heartbeat_ttl: Duration::from_millis(600), ..config };
/// assert!(bad.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How often a worker writes its heartbeat (default 2 s).
    pub heartbeat_interval: Duration,
    /// A worker whose heartbeat was not seen for this long is missing
    /// (default 6 s; at least 2 × `heartbeat_interval`). A worker that cannot
    /// confirm its own heartbeat for 3/4 of this releases its partitions
    /// (self-fencing), so nobody else is granted them while it may still act.
    pub heartbeat_ttl: Duration,
    /// How long a crashed worker's ID stays reserved (default 30 s; at least
    /// `heartbeat_ttl`). Also the max age of the workers bucket.
    pub worker_id_ttl: Duration,
    /// The leader lease (default 5 s). Renewed every third of it; a leader that
    /// cannot renew steps down after 3/4 of it; followers take over when the
    /// lease was not renewed for all of it.
    pub election_ttl: Duration,
    /// How long a new group waits for workers to appear before the first
    /// assignment (default 30 s).
    pub cold_start_window: Duration,
    /// How long the leader waits after a worker joins before rebalancing
    /// (default 10 s). Restarted by further joins, but never longer than
    /// 3 × this from the first join.
    pub planned_scale_window: Duration,
    /// How long a missing worker stays missing before it is declared dead and
    /// its partitions move (default 3 s).
    pub emergency_grace: Duration,
    /// Minimum time between two non-emergency rebalances (default 10 s).
    pub rebalance_cooldown: Duration,
    /// How long `start()` waits for the first assignment beyond the
    /// cold-start window (default 30 s).
    pub startup_timeout: Duration,
    /// Upper bound on `stop()` and `Drop` (default 10 s).
    pub shutdown_timeout: Duration,
    /// Deadline of every single KV operation (default 2 s). Must be below
    /// half of `heartbeat_ttl` and of `election_ttl`; left at its default,
    /// it becomes a third of the shorter of the two when they are shorter.
    pub operation_timeout: Duration,
    /// How much of the group must vanish at once for a fleet restart
    /// (default 0.5; in (0, 1]). Vanishing alone is not enough: the leader
    /// waits the cold-start window only when, in addition, no surviving
    /// worker holds any partition — after an all-gone-then-back restart,
    /// where the workers present are new processes. A zone loss, whatever
    /// fraction it takes, leaves survivors working and is an emergency: the
    /// dead workers' partitions go to the survivors at once, and workers
    /// that come back under their IDs get them back in one planned
    /// rebalance.
    pub restart_ratio: f64,
    /// Worker IDs are `<prefix>-<n>` (default "worker").
    pub worker_id_prefix: String,
    /// Largest group size: IDs run from 0 to `max_workers - 1` (default 1024).
    pub max_workers: u32,
    /// How long the leader waits for a worker to release a partition that
    /// moves before it reports the delay through `on_error` (default 10 s).
    pub handoff_timeout: Duration,
    /// Replicas of the group's KV buckets in a JetStream cluster (default 1).
    pub replicas: usize,
    /// What a worker does when it cannot confirm its heartbeat (NATS
    /// unreachable) for 3/4 of `heartbeat_ttl`.
    ///
    /// `false` (the default, exclusivity): it releases every partition
    /// (`on_assignment_changed` fires with them removed) and enters
    /// `Degraded`, so no two workers ever own a partition at once; it gets
    /// them back when NATS returns.
    ///
    /// `true` (availability, opt-in): it keeps processing its cached
    /// assignment while `Degraded`. If the outage is only on its side, the
    /// leader may meanwhile give its partitions to others: delivery becomes
    /// at-least-once. Use fencing tokens downstream if that matters.
    pub keep_assignment_on_outage: bool,
    /// How long a partition whose required labels no live worker carries
    /// stays parked (unowned) before any worker may take it; `None` (the
    /// default): parked until a worker carrying them joins. A spilled
    /// partition goes back to an eligible worker at the next rebalance
    /// once one is live.
    pub label_spill_grace: Option<Duration>,
}

impl Default for Config {
    /// The values listed on each field. Kept after measuring them against
    /// [`Config::fast`] and the peers' defaults (README, "Defaults
    /// measured"): a crashed worker's partitions move after about 9 s
    /// (Go Parti's defaults: 15–30 s, Kafka's session timeout: 45 s) for
    /// 0.65 KV writes per second per worker, and the 2 s operation timeout
    /// and 6 s TTL ride out the latency of NATS in another zone.
    fn default() -> Self {
        Config {
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(6),
            worker_id_ttl: Duration::from_secs(30),
            election_ttl: Duration::from_secs(5),
            cold_start_window: Duration::from_secs(30),
            planned_scale_window: Duration::from_secs(10),
            emergency_grace: Duration::from_secs(3),
            rebalance_cooldown: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(2),
            restart_ratio: 0.5,
            worker_id_prefix: "worker".to_string(),
            max_workers: 1024,
            handoff_timeout: Duration::from_secs(10),
            replicas: 1,
            keep_assignment_on_outage: false,
            label_spill_grace: None,
        }
    }
}

mod check;
pub(crate) mod ratios;
mod resolve;
#[cfg(test)]
mod tests;

impl Config {
    /// The defaults tuned for fast failover on a good network: heartbeat
    /// 200 ms / TTL 800 ms, emergency grace 300 ms, leader lease 1.2 s, KV
    /// operations bounded at 250 ms, and short windows (cold start 3 s,
    /// planned scale 2 s, cooldown 2 s, handoff alert 5 s).
    ///
    /// A crashed worker's partitions move after about 1.1 s instead of
    /// about 9 s, for about ten times the KV writes: each worker writes 5
    /// heartbeats per second (0.5 with [`Config::default`]) and the leader
    /// renews its lease 2.5 times per second (0.6). Use it on one data
    /// centre's network with NATS close by; keep the defaults across
    /// regions or on busy shared servers, where a 250 ms operation timeout
    /// and an 800 ms TTL would turn latency spikes into false deaths.
    ///
    /// ```
    /// use parti::Config;
    /// use std::time::Duration;
    /// let fast = Config::fast();
    /// assert!(fast.validate().is_ok());
    /// assert_eq!(fast.heartbeat_ttl, Duration::from_millis(800));
    /// // Start from it and change what you need, as with the defaults.
    /// let config = Config { replicas: 3, ..Config::fast() };
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn fast() -> Self {
        Config {
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_ttl: Duration::from_millis(800),
            election_ttl: Duration::from_millis(1200),
            emergency_grace: Duration::from_millis(300),
            operation_timeout: Duration::from_millis(250),
            cold_start_window: Duration::from_secs(3),
            planned_scale_window: Duration::from_secs(2),
            rebalance_cooldown: Duration::from_secs(2),
            handoff_timeout: Duration::from_secs(5),
            ..Config::default()
        }
    }

    /// Checks every field and their relations, after the fields left at
    /// their default have followed the ones set (see
    /// [`resolved`](Config::resolved)).
    pub fn validate(&self) -> Result<(), Error> {
        self.resolved().map(|_| ())
    }

    /// The configuration `start()` runs with: every field still at its
    /// default value that conflicts with a field you changed is derived from
    /// the changed ones, then the result is checked.
    ///
    /// | left at its default | conflicts when | becomes |
    /// |---|---|---|
    /// | `heartbeat_ttl` | below 2 × `heartbeat_interval` | 3 × `heartbeat_interval` |
    /// | `heartbeat_interval` | above `heartbeat_ttl` / 2 | `heartbeat_ttl` / 3 |
    /// | `worker_id_ttl` | below `heartbeat_ttl` | 5 × `heartbeat_ttl` |
    /// | `operation_timeout` | above half of `heartbeat_ttl` or `election_ttl` | a third of the smaller |
    ///
    /// A value you set explicitly is never changed: one that cannot work
    /// (e.g. `operation_timeout` above half a TTL you also set) is rejected
    /// with [`Error::InvalidConfig`], naming the field and a value that
    /// would fit. "At its default" means equal to the
    /// [`Config::default`] value, whether written out or not.
    ///
    /// ```
    /// use parti::Config;
    /// use std::time::Duration;
    /// let config = Config {
    ///     heartbeat_interval: Duration::from_millis(200),
    ///     heartbeat_ttl: Duration::from_millis(800),
    ///     ..Config::default()
    /// };
    /// let resolved = config.resolved()?;
    /// // The default 2 s operation timeout would exceed half the TTL.
    /// assert!(resolved.operation_timeout <= Duration::from_millis(400));
    /// // Set explicitly, the same conflict is an error naming the field.
    /// let bad = Config { operation_timeout: Duration::from_millis(500), ..config };
    /// assert!(matches!(
    ///     bad.resolved(),
    ///     Err(parti::Error::InvalidConfig { field: "operation_timeout", .. })
    /// ));
    /// # Ok::<(), parti::Error>(())
    /// ```
    pub fn resolved(&self) -> Result<Config, Error> {
        let config = resolve::follow_changed(self);
        check::check(&config)?;
        Ok(config)
    }

    /// A worker that has not confirmed a heartbeat for this long releases its
    /// partitions: 3/4 of the TTL, so it stops before the leader can
    /// declare it dead and grant them elsewhere.
    pub fn self_fence_after(&self) -> Duration {
        ratios::step_down_after(self.heartbeat_ttl)
    }

    /// A leader that has not renewed for this long stops acting as leader.
    pub fn lease_step_down_after(&self) -> Duration {
        ratios::step_down_after(self.election_ttl)
    }

    /// How often the leader renews its lease.
    pub fn lease_renew_interval(&self) -> Duration {
        ratios::renew_every(self.election_ttl)
    }

    /// A manager whose heartbeat thread finished no KV operation (answered
    /// or failed) for this long is wedged: `heartbeat_ttl +
    /// heartbeat_interval + operation_timeout`. The thread attempts a write
    /// at least every interval, each bounded by the operation timeout; the
    /// TTL on top absorbs scheduling stalls. See
    /// [`Health::is_live`](crate::Health::is_live).
    pub fn stall_after(&self) -> Duration {
        self.heartbeat_ttl + self.heartbeat_interval + self.operation_timeout
    }
}
