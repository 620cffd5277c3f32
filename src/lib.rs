//! parti: share N partitions across a fleet of worker processes through NATS
//! JetStream KV, like a Kafka consumer group, with nothing but a NATS server.
//!
//! Each worker process runs a [`Manager`]. Managers claim stable IDs
//! (`worker-0`, `worker-1`, …) and heartbeat; one of them holds a leader
//! lease and computes which worker owns which partition; every manager
//! installs its own share and tells your code. A partition is never owned by
//! two workers at once (revoke before grant, self-fencing on a lost
//! connection, fencing tokens for downstream writes), and only the partitions
//! that must move pause when workers come and go.
//!
//! The library is synchronous and thread-based: no async runtime. Poll
//! [`Manager::assignment`] from your processing loop, or react in
//! [`ManagerBuilder::on_assignment_changed`].
//!
//! # Quick start
//!
//! Against a NATS server with JetStream (`nats-server -js`):
//!
//! ```no_run
//! use parti::source::StaticSource;
//! use parti::{Manager, Partition};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let nc = parti::store::nats::connect("127.0.0.1:4222")?;
//!     let manager = Manager::builder(nc, "orders")
//!         .partitions(StaticSource::new(
//!             (0..64).map(|i| Partition::new(format!("orders.{i}"))),
//!         ))
//!         .on_assignment_changed(|change| {
//!             // Stop working on change.removed() before returning: the next
//!             // owner is granted them only afterwards.
//!             println!("+{:?} -{:?}", change.added(), change.removed());
//!         })
//!         .start()?; // blocks until this worker holds its first assignment
//!     for p in manager.assignment().partitions() {
//!         println!("I own {}", p.id());
//!     }
//!     manager.stop()?; // graceful: its partitions move to the others first
//!     Ok(())
//! }
//! ```
//!
//! The same group without a server, on the in-process store that the tests
//! use ([`store::memory`]), with short timings: two workers end up with four
//! partitions each.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use parti::source::StaticSource;
//! use parti::store::memory::MemoryBackend;
//! use parti::{Config, ManagerBuilder, Partition};
//!
//! # fn main() -> Result<(), parti::Error> {
//! let store = MemoryBackend::default();
//! let config = Config {
//!     heartbeat_interval: Duration::from_millis(50),
//!     heartbeat_ttl: Duration::from_millis(200),
//!     operation_timeout: Duration::from_millis(100),
//!     election_ttl: Duration::from_millis(300),
//!     cold_start_window: Duration::from_millis(200),
//!     planned_scale_window: Duration::from_millis(200),
//!     rebalance_cooldown: Duration::from_millis(100),
//!     ..Config::default()
//! };
//! let worker = || {
//!     ManagerBuilder::with_backend(Arc::new(store.client()), "demo")
//!         .config(config.clone())
//!         .partitions(StaticSource::new((0..8).map(|i| Partition::new(format!("p{i}")))))
//!         .start()
//! };
//! let (a, b) = (worker()?, worker()?);
//! let deadline = Instant::now() + Duration::from_secs(20);
//! while (a.assignment().len(), b.assignment().len()) != (4, 4) {
//!     assert!(Instant::now() < deadline, "the two workers did not balance");
//!     std::thread::sleep(Duration::from_millis(20));
//! }
//! a.stop()?;
//! b.stop()?;
//! # Ok(()) }
//! ```
//!
//! # Concepts
//!
//! | concept | what it is |
//! |---|---|
//! | group | the workers sharing one set of partitions: three KV buckets `parti-<group>-workers`, `-leader`, `-assignments` ([`BucketNames`]) |
//! | [`Partition`] | a unit of work (an id and a weight), listed by a [`source::PartitionSource`] (static, closure, KV bucket) |
//! | worker ID | `worker-<n>`, claimed with a KV create and kept alive by heartbeats; [`ManagerBuilder::preferred_id`] asks for a given one (a StatefulSet ordinal) |
//! | leader | the worker holding the lease; it runs the [`strategy`] and publishes one assignment per worker |
//! | [`Assignment`] | this worker's partitions at a version, each with a fencing token ([`Assignment::token`]) |
//! | [`RebalanceKind`] | why an assignment changed: cold start, planned scale, emergency (a worker died), restart, … |
//! | [`State`] | the manager's lifecycle: `Init` … `Stable`, `Scaling`, `Rebalancing`, `Emergency`, `Degraded`, `Shutdown` |
//! | [`Config`] | every timing (heartbeat interval and TTL, windows, timeouts), validated by `start()` |
//!
//! # Architecture
//!
//! ```text
//!  worker process: one Manager                          NATS JetStream KV
//! ┌───────────────────────────────────────────┐        ┌────────────────────────────┐
//! │ worker thread    heartbeat: CAS worker-<n> ├───────▶│ parti-<group>-workers      │
//! │                  applies its assignment   ◀┼────────┤   worker-0, worker-1, …    │
//! │ election thread  lease: create / CAS      ├───────▶│ parti-<group>-leader       │
//! │ leader thread    (the leader only) watches│        │   leader (epoch, owner)    │
//! │                  heartbeats, runs the     │        │                            │
//! │                  strategy, publishes      ├───────▶│ parti-<group>-assignments  │
//! │ callback thread  runs your hooks          │        │   worker-<n>…, _meta       │
//! │ KV layer         flusher, watch hub       │        └────────────────────────────┘
//! ├───────────────────────────────────────────┤
//! │ src/core: pure state machines (lease,     │  threads only carry events in and
//! │ worker, ledger, calculator) taking `now`  │  run the actions out; the same core
//! │ as an argument                            │  runs in a deterministic simulator
//! └───────────────────────────────────────────┘
//! ```
//!
//! # Where to go next
//!
//! - [`ManagerBuilder`]: every option (strategy, partition source, metrics,
//!   hooks); [`Manager`]: what a running worker offers ([`Manager::health`]
//!   for probes, [`Manager::refresh_partitions`]).
//! - [`store::nats`]: connecting, authentication, TLS, minimal permissions.
//! - [`subscription`]: NATS subscriptions and JetStream consumers that follow
//!   the assignment (the Kafka consumer replacement).
//! - [`strategy`]: the placement strategies and how to write one;
//!   [`metrics`]: the measurements a manager reports.
//! - The guides in the repository's `docs/`: concepts and tuning,
//!   deployment (clusters, Kubernetes), operations (states, errors, runbook),
//!   monitoring (metrics, alerts, dashboard, logs), security, migrating from
//!   Kafka, placement strategies; and the examples in `examples/`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
mod config;
mod core;
mod error;
mod health;
mod manager;
pub mod metrics;
mod names;
mod runtime;
#[doc(hidden)]
pub mod sim;
pub mod source;
mod state;
pub mod store;
pub mod strategy;
pub mod subscription;
mod types;
pub mod wire;

pub use config::Config;
pub use error::Error;
pub use health::Health;
pub use manager::{Manager, ManagerBuilder};
pub use names::BucketNames;
pub use state::State;
pub use types::{Assignment, AssignmentChange, Partition, Placement, RebalanceKind};

// The guides' Rust snippets are compiled (and run, unless marked) by
// `cargo test --doc`, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/concepts-and-tuning.md")]
mod concepts_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/architecture.md")]
mod architecture_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/connections.md")]
mod connections_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/consumers.md")]
mod consumers_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/deployment.md")]
mod deployment_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/migration-from-kafka.md")]
mod migration_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/monitoring.md")]
mod monitoring_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/operations.md")]
mod operations_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../docs/security.md")]
mod security_doctests {}
