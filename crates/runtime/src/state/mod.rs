//! Keyed state for stateful processors: one [`PartitionStore`] per input partition, owned by
//! the instance that owns the partition, backed by a compacted changelog topic partition of
//! the same number (`<group>-<store>-changelog`).
//!
//! Every handled input (or fired timer) turns its mutations into one *batch* of changelog
//! records: the changed values and timers, then a marker recording the input offset now
//! applied. A batch's records carry `sf.batch` (its id) and `sf.part` (`i/n`) headers, so a
//! restore applies whole batches only: a batch cut short by a crash is at the very end of
//! the partition (one idempotent producer writes it, in order) and is dropped, and its input,
//! not yet committed, is processed again. Redelivered inputs at or below the applied marker
//! are skipped, so a record's state effects happen exactly once even in at-least-once mode.
//!
//! This module is pure (no Kafka): the driver feeds it records and turns batches into
//! produce calls.

mod changelog;
mod restore;
mod snapshot;
mod store;

pub(crate) use changelog::batch as changelog_batch;
pub use changelog::{ChangelogRecord, BATCH_HEADER, PART_HEADER};
pub use restore::Restorer;
pub use snapshot::{read_snapshot, write_snapshot};
pub(crate) use store::Dirty;
pub use store::{PartitionStore, State, Timer};
