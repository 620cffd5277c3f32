//! parti: share N partitions across a fleet of worker processes through NATS
//! JetStream KV.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
mod config;
pub mod core;
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
