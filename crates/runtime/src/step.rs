//! One record, or one due timer, applied to one partition's store: the part of handling
//! that involves no Kafka. The driver runs it between consuming and producing; the testkit
//! runs the very same steps with records a test hands it, so what a test sees of a handler
//! (its outputs, its state changes, a failed handler's changes rolled back, a due timer
//! removed before `on_timer` runs) is what the runtime does.
//!
//! What stays with the caller: skipping a record its store already applied
//! ([`PartitionStore::already_applied`]), and marking the record applied once its outputs
//! are safe ([`PartitionStore::mark_applied`]).

use std::collections::{BTreeSet, HashMap};

use codec::{CodecError, TopicCodec, Value};
use topology::ValueFormat;

use crate::processor::{Effect, HandlerError, Input, OutRecord, Outputs, StatefulProcessor};
use crate::state::{PartitionStore, State, Timer};

/// What a handler (or timer handler) did, once it succeeded.
pub struct Applied {
    /// Its outputs, encoded, in the order it sent them.
    pub records: Vec<OutRecord>,
    /// Side effects to await before the record is committed ([`Outputs::defer`]).
    pub effects: Vec<Effect>,
    /// The store keys whose value or timer it changed (what the changelog batch carries).
    pub dirty: BTreeSet<String>,
}

/// Runs `processor`'s handler for `input` against `store`. A failed handler leaves `store`
/// exactly as it was.
pub async fn handle<P: StatefulProcessor>(
    processor: &mut P,
    store: &mut PartitionStore<P::Value>,
    codecs: &HashMap<String, TopicCodec>,
    input: &Input,
) -> Result<Applied, HandlerError> {
    let mut outputs = Outputs::new(codecs);
    let mut view = State::new(store);
    if let Err(e) = processor.handle(input, &mut view, &mut outputs).await {
        view.rollback();
        return Err(e);
    }
    Ok(applied(view, outputs))
}

/// Fires `timer` (due, taken from `store` with [`PartitionStore::next_due`]): removes it,
/// then runs `on_timer`. A failed timer handler leaves `store` as it was, timer included,
/// so the timer fires again.
pub async fn fire<P: StatefulProcessor>(
    processor: &mut P,
    store: &mut PartitionStore<P::Value>,
    codecs: &HashMap<String, TopicCodec>,
    timer: &Timer,
) -> Result<Applied, HandlerError> {
    let mut outputs = Outputs::new(codecs);
    let mut view = State::new(store);
    view.cancel_timer(&timer.key);
    if let Err(e) = processor.on_timer(timer, &mut view, &mut outputs).await {
        view.rollback();
        return Err(e);
    }
    Ok(applied(view, outputs))
}

fn applied<V: Clone>(view: State<'_, V>, outputs: Outputs<'_>) -> Applied {
    let dirty = view.into_dirty();
    let (records, effects) = outputs.into_parts();
    Applied {
        records,
        effects,
        dirty,
    }
}

/// A record's value as a handler sees it: Avro decoded by the topic's codec, any other
/// format as its bytes, `None` for a tombstone.
pub async fn decode_value(
    topic: &str,
    format: Option<ValueFormat>,
    codec: Option<&TopicCodec>,
    payload: Option<&[u8]>,
) -> Result<Option<Value>, CodecError> {
    match (payload, format) {
        (None, _) => Ok(None),
        (Some(bytes), Some(ValueFormat::Avro)) => {
            let codec =
                codec.ok_or_else(|| CodecError::Registry(format!("no codec for `{topic}`")))?;
            Ok(Some(codec.decode(bytes).await?))
        }
        (Some(bytes), _) => Ok(Some(Value::Bytes(bytes.to_vec()))),
    }
}
