//! The processor runtime: every Storefleet processor is a [`Processor`] (pure decisions) run
//! by [`run`] (all the I/O): consume → decode Avro (Confluent framing) → handle → encode →
//! produce → commit.
//!
//! Guarantees, at-least-once mode:
//! - An input offset is committed only after every output it caused (including its
//!   dead-letter record) has been acknowledged by the broker, so a crash at any point loses
//!   nothing; records after the last commit are processed again (duplicates, never loss).
//!   Output event ids are derived deterministically from the input ([`ids::derived`]) so
//!   consumers can drop such duplicates.
//! - Records of one input partition are handled one after another, in offset order, and
//!   their outputs are produced by one idempotent producer in that order: per-key ordering
//!   holds end to end.
//! - A record that cannot be decoded or processed never stalls its partition: after the
//!   retries [`policy`] allows, it goes to the input's dead-letter topic with the reason, the
//!   original bytes and its source coordinates, and the partition moves on.
//! - SIGTERM/SIGINT (the caller cancels the token): in-flight records finish, their outputs
//!   are acknowledged, offsets are committed, and the consumer leaves its group.

mod admin;
mod config;
mod dead_letter;
mod driver;
mod error;
pub mod headers;
pub mod ids;
mod kafka;
mod metrics;
pub mod policy;
mod processor;
pub mod state;

pub use admin::{serve_admin, Phase};
pub use config::{postgres_database_url, RetryPolicy, RuntimeConfig, StackEnv};
pub use dead_letter::{DeadLetter, DeadLetterErrorKind, DeadLetterHeader};
pub use driver::state_io::{
    ensure_changelog_at as ensure_changelog, restore as restore_partition, Restored,
};
pub use driver::{now_millis as now_ms, run, run_pipelined, run_stateful};
pub use error::{error_chain, RuntimeError};
pub use kafka::{consumer_config, producer_config};
pub use metrics::Metrics;
pub use processor::{BoxError, Effect};
pub use processor::{
    ConcurrentProcessor, HandlerError, Input, Outputs, Processor, StatefulProcessor, Stateless,
};
