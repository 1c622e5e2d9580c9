//! Keyed state for stateful processors: one [`PartitionStore`] per input partition, owned by
//! the instance that owns the partition, backed by a compacted changelog topic partition of
//! the same number (`<group>-<store>-changelog`).
//!
//! Handled inputs (and fired timers) change the in-memory store at once; the driver writes
//! what changed as one *batch* per flush (every `state_flush_interval`, and before a
//! snapshot or a clean shutdown): each changed key once, with its value and timer as they
//! are then, and on the batch's last record the offsets of every input now applied. A batch
//! is written only after the outputs of every record it covers are acknowledged, and those
//! records' offsets are committed only after the batch is: a crash at any point leaves a
//! state that is exactly "all handled records up to the last written batch", and the
//! records after it, uncommitted, are handled again. A restore applies whole batches only: a
//! batch cut short by a crash is at the very end of the partition (one idempotent producer
//! writes it, in order) and is dropped; an interior batch thinned by compaction is applied
//! as it is (what compaction removed is superseded later). Redelivered inputs at or below
//! the applied offsets are skipped, so a record's state effects happen once even in
//! at-least-once mode. See `changelog.rs` for the record format.
//!
//! This module is pure (no Kafka): the driver feeds it records and turns batches into
//! produce calls.

mod changelog;
mod restore;
mod snapshot;
mod store;

pub use changelog::{
    batch as changelog_batch, decode as decode_changelog, entry as changelog_entry, Change,
    ChangelogError, ChangelogRecord, Decoded, BATCH_HEADER, MARKER_KEY, PART_HEADER,
};
pub use restore::Restorer;
pub use snapshot::{read_snapshot, write_snapshot};
pub use store::{PartitionStore, State, Timer};
