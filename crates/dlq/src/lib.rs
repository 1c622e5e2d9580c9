//! `fleet dlq`: the operator's dead-letter tool. Every processor dead-letters what it cannot
//! handle to `dlq.<processor>.<input>.v1` (value `schemas/dlq/DeadLetter.avsc`, key the
//! original key bytes); this crate lists those topics and their records, shows one dead
//! letter in full, and redrives dead letters to where they came from.
//!
//! Guarantees:
//! - Reading never disturbs the fleet: partitions are assigned (no group membership, no
//!   commits) and read up to the high watermark captured at start, then the read ends.
//! - A redrive re-produces the original key and value bytes unchanged, with the original
//!   headers (minus earlier `sf.*` ones) plus `sf.not-before` (a jittered exponential
//!   deferral, [`backoff`]) and `sf.redriven-from`. Every target is checked against the
//!   topology before the first record is produced.
//! - A redrive is logged to [`redrive_log::TOPIC`] only after the broker acknowledged the
//!   redriven record (idempotent producer): a crash can redrive a record twice, never
//!   lose one or log one that was not sent. Logged dead letters are skipped unless `--again`.
//!
//! Decisions ([`plan`], [`backoff`], [`request`], [`render`], [`letter`]) are plain
//! functions without I/O; [`kafka`], `decode` and the command modules do the I/O.

pub mod backoff;
mod cli;
mod coordinates;
pub mod decode;
mod error;
mod inspect;
pub mod kafka;
pub mod letter;
mod list;
pub mod plan;
mod redrive;
pub mod redrive_log;
pub mod render;
pub mod request;

pub use cli::{parse_error_kind, DlqAction};
pub use coordinates::Coordinates;
pub use error::{Error, Result};
pub use request::{RedriveRequest, RequestError};

use runtime::StackEnv;
use topology::Topology;

/// Runs one `fleet dlq` action against the stack at `env`, checked against `topology`.
pub async fn run(action: DlqAction, env: &StackEnv, topology: &Topology) -> Result<()> {
    match action {
        DlqAction::List { topic: None, .. } => list::every_topic(env, topology).await,
        DlqAction::List {
            topic: Some(topic),
            limit,
        } => list::one_topic(env, topology, &topic, limit).await,
        DlqAction::Inspect {
            topic,
            partition,
            offset,
        } => inspect::run(env, topology, &topic, partition, offset).await,
        redrive @ DlqAction::Redrive { .. } => {
            let request = RedriveRequest::from_action(redrive, topology)?;
            redrive::run(request, env, topology).await
        }
    }
}
