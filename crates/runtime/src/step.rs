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

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores its key's input count and sets a timer; its timer handler writes, then fails
    /// when the stored count is odd.
    struct Flaky;

    impl StatefulProcessor for Flaky {
        type Value = u32;
        const STORE: &'static str = "flaky";

        async fn handle(
            &mut self,
            input: &Input,
            state: &mut State<'_, u32>,
            _out: &mut Outputs<'_>,
        ) -> Result<(), HandlerError> {
            let key = input.key_str().unwrap_or_default().to_string();
            let seen = state.get(&key).copied().unwrap_or(0) + 1;
            state.put(&key, seen);
            state.set_timer(&key, 10, "t");
            if key == "bad" {
                return Err(HandlerError::invalid("bad key"));
            }
            Ok(())
        }

        async fn on_timer(
            &mut self,
            timer: &Timer,
            state: &mut State<'_, u32>,
            _out: &mut Outputs<'_>,
        ) -> Result<(), HandlerError> {
            let seen = state.get(&timer.key).copied().unwrap_or(0);
            state.put(&timer.key, 100);
            if seen % 2 == 1 {
                return Err(HandlerError::transient("odd", "odd"));
            }
            Ok(())
        }
    }

    fn input(key: &str) -> Input {
        Input {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: Some(key.as_bytes().to_vec()),
            value: None,
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_failed_handler_or_timer_leaves_the_store_as_it_was() {
        let codecs = HashMap::new();
        let mut store = PartitionStore::default();
        let applied = handle(&mut Flaky, &mut store, &codecs, &input("k"))
            .await
            .unwrap();
        assert_eq!(applied.dirty.into_iter().collect::<Vec<_>>(), ["k"]);
        assert_eq!(store.get("k"), Some(&1));

        assert!(handle(&mut Flaky, &mut store, &codecs, &input("bad"))
            .await
            .is_err());
        assert_eq!(store.get("bad"), None);
        assert!(store.timer("bad").is_none());

        // Count 1 is odd: the timer handler fails, and the timer is still there to fire again.
        let due = store.next_due(10).unwrap();
        assert!(fire(&mut Flaky, &mut store, &codecs, &due).await.is_err());
        assert_eq!(store.get("k"), Some(&1));
        assert_eq!(store.timer("k"), Some(due.clone()));

        handle(&mut Flaky, &mut store, &codecs, &input("k"))
            .await
            .unwrap();
        let due = store.next_due(10).unwrap();
        fire(&mut Flaky, &mut store, &codecs, &due).await.unwrap();
        assert_eq!(store.get("k"), Some(&100));
        assert!(store.timer("k").is_none(), "a fired timer is gone");
    }
}
