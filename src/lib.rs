//! parti: share N partitions across a fleet of worker processes through NATS
//! JetStream KV.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
mod config;
mod manager;
pub mod core;
mod names;
mod runtime;
pub mod source;
pub mod wire;
mod error;
mod health;
pub mod metrics;
mod state;
pub mod store;
pub mod strategy;
mod types;

pub use config::Config;
pub use error::Error;
pub use health::Health;
pub use manager::{Manager, ManagerBuilder};
pub use names::BucketNames;
pub use state::State;
pub use types::{Assignment, AssignmentChange, Partition, Placement, RebalanceKind};
