//! The kit: one processor, its partition stores, its paused clock.

use std::collections::{BTreeMap, HashMap};

use codec::TopicCodec;
use runtime::state::{PartitionStore, State, Timer};
use runtime::step::{self, Applied};
use runtime::{
    Clock, ConcurrentProcessor, HandlerError, Input, ManualClock, Outputs, StatefulProcessor,
};
use serde::Serialize;
use topology::ValueFormat;

use crate::output::Output;
use crate::TestkitError;

/// A [`ConcurrentProcessor`] as the kit runs it: one record at a time, in the order sent
/// (the pipelined driver keeps that order per key, which is what such a processor relies
/// on). No state, no timers.
pub struct OneAtATime<P>(pub P);

impl<P: ConcurrentProcessor> StatefulProcessor for OneAtATime<P> {
    type Value = ();
    const STORE: &'static str = "";

    async fn handle(
        &mut self,
        input: &Input,
        _state: &mut State<'_, ()>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        self.0.handle(input, out).await
    }

    async fn on_timer(
        &mut self,
        _timer: &Timer,
        _state: &mut State<'_, ()>,
        _out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// One processor under test (see the crate docs). Records go to partition 0 unless a test
/// names another; each topic partition's offsets count from 0.
pub struct Testkit<P: StatefulProcessor> {
    processor: P,
    clock: ManualClock,
    codecs: HashMap<String, TopicCodec>,
    formats: HashMap<String, ValueFormat>,
    inputs: Vec<String>,
    stores: BTreeMap<i32, PartitionStore<P::Value>>,
    /// Every record sent, by (topic, partition, offset), for redelivery.
    sent: BTreeMap<(String, i32, i64), Input>,
}

impl<P: StatefulProcessor> Testkit<P> {
    pub(crate) fn new(
        processor: P,
        clock: ManualClock,
        codecs: HashMap<String, TopicCodec>,
        formats: HashMap<String, ValueFormat>,
        inputs: Vec<String>,
    ) -> Self {
        Self {
            processor,
            clock,
            codecs,
            formats,
            inputs,
            stores: BTreeMap::new(),
            sent: BTreeMap::new(),
        }
    }

    /// The clock the processor was given (it reads the kit's time).
    pub fn clock(&self) -> Clock {
        self.clock.clock()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn processor(&self) -> &P {
        &self.processor
    }

    pub fn processor_mut(&mut self) -> &mut P {
        &mut self.processor
    }

    /// Sends `value` under `key` to input `topic`, partition 0, encoded with the topic's
    /// schema; returns what the handler sent.
    pub async fn send<T: Serialize>(
        &mut self,
        topic: &str,
        key: &str,
        value: &T,
    ) -> Result<Vec<Output>, TestkitError> {
        self.send_to(topic, 0, key, value).await
    }

    /// [`Testkit::send`] to another partition (each partition has its own store, as each
    /// has its own owner in the fleet).
    pub async fn send_to<T: Serialize>(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        value: &T,
    ) -> Result<Vec<Output>, TestkitError> {
        let payload = self.encode(topic, value)?;
        self.send_raw(
            topic,
            partition,
            Some(key.as_bytes().to_vec()),
            Some(payload),
            Vec::new(),
        )
        .await
    }

    /// Sends a record as bytes (already framed for an Avro topic; `None` is a tombstone)
    /// with headers.
    pub async fn send_raw(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<Output>, TestkitError> {
        if !self.inputs.iter().any(|i| i == topic) {
            return Err(TestkitError::Setup(format!(
                "`{topic}` is not an input of this processor"
            )));
        }
        let value = step::decode_value(
            topic,
            self.formats.get(topic).copied(),
            self.codecs.get(topic),
            payload.as_deref(),
        )
        .await?;
        let offset = self
            .sent
            .range((topic.to_string(), partition, 0)..=(topic.to_string(), partition, i64::MAX))
            .next_back()
            .map_or(0, |((_, _, last), _)| last + 1);
        let input = Input {
            topic: topic.to_string(),
            partition,
            offset,
            key,
            value,
            timestamp_ms: Some(self.clock.now_ms()),
            headers,
        };
        self.sent
            .insert((topic.to_string(), partition, offset), input.clone());
        self.deliver(&input).await
    }

    /// Hands the record sent at `offset` of `topic`/`partition` to the handler again, as the
    /// runtime does after a crash before its offset was committed. A stateful processor whose
    /// store already applied it skips it (no outputs).
    pub async fn redeliver(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<Output>, TestkitError> {
        let input = self
            .sent
            .get(&(topic.to_string(), partition, offset))
            .cloned()
            .ok_or_else(|| TestkitError::NotSent {
                topic: topic.to_string(),
                partition,
                offset,
            })?;
        self.deliver(&input).await
    }

    /// Moves the clock `ms` forward, firing every timer that comes due on the way, each at
    /// its own time (the clock stands at a timer's due time while it fires, so a timer set by
    /// a timer fires too if it is due before the end); returns what they sent.
    pub async fn advance(&mut self, ms: i64) -> Result<Vec<Output>, TestkitError> {
        let until = self.clock.now_ms().saturating_add(ms.max(0));
        let mut sent = Vec::new();
        while let Some((partition, timer)) = self.next_due(until) {
            let now = self.clock.now_ms();
            self.clock.advance(timer.at_ms - now);
            let store = self.stores.entry(partition).or_default();
            let applied = step::fire(&mut self.processor, store, &self.codecs, &timer)
                .await
                .map_err(TestkitError::Handler)?;
            sent.extend(self.settle(applied).await?);
        }
        let now = self.clock.now_ms();
        self.clock.advance(until - now);
        Ok(sent)
    }

    /// The value under `key` in any partition's store.
    pub fn state(&self, key: &str) -> Option<&P::Value> {
        self.stores.values().find_map(|s| s.get(key))
    }

    /// The timer of `key` in any partition's store.
    pub fn timer(&self, key: &str) -> Option<Timer> {
        self.stores.values().find_map(|s| s.timer(key))
    }

    /// The store of `partition`, if a record reached it.
    pub fn store(&self, partition: i32) -> Option<&PartitionStore<P::Value>> {
        self.stores.get(&partition)
    }

    /// Encodes `value` as `topic`'s records are written (for [`Testkit::send_raw`]).
    pub fn encode<T: Serialize>(&self, topic: &str, value: &T) -> Result<Vec<u8>, TestkitError> {
        match self.formats.get(topic) {
            Some(ValueFormat::Avro) => {
                let codec = self
                    .codecs
                    .get(topic)
                    .ok_or_else(|| TestkitError::Setup(format!("`{topic}` has no Avro schema")))?;
                Ok(codec.encode(value)?)
            }
            Some(ValueFormat::Json) => serde_json::to_vec(value)
                .map_err(|e| TestkitError::Setup(format!("`{topic}` value as JSON: {e}"))),
            Some(ValueFormat::Bytes) => Err(TestkitError::Setup(format!(
                "`{topic}` carries bytes: use send_raw"
            ))),
            None => Err(TestkitError::Setup(format!(
                "`{topic}` is not a topic here"
            ))),
        }
    }

    /// The earliest timer due by `until`, over every partition.
    fn next_due(&self, until: i64) -> Option<(i32, Timer)> {
        self.stores
            .iter()
            .filter_map(|(p, store)| store.next_due(until).map(|t| (*p, t)))
            .min_by_key(|(p, t)| (t.at_ms, *p))
    }

    async fn deliver(&mut self, input: &Input) -> Result<Vec<Output>, TestkitError> {
        let stateful = !P::STORE.is_empty();
        let store = self.stores.entry(input.partition).or_default();
        if stateful && store.already_applied(&input.topic, input.offset) {
            return Ok(Vec::new());
        }
        let applied = step::handle(&mut self.processor, store, &self.codecs, input)
            .await
            .map_err(TestkitError::Handler)?;
        let sent = self.settle(applied).await?;
        if stateful {
            if let Some(store) = self.stores.get_mut(&input.partition) {
                store.mark_applied(&input.topic, input.offset);
            }
        }
        Ok(sent)
    }

    /// Awaits the deferred effects, in order, and decodes the outputs.
    async fn settle(&self, applied: Applied) -> Result<Vec<Output>, TestkitError> {
        for effect in applied.effects {
            effect.await.map_err(TestkitError::Effect)?;
        }
        let mut sent = Vec::with_capacity(applied.records.len());
        for record in applied.records {
            sent.push(Output::from_record(record, &self.codecs, &self.formats).await?);
        }
        Ok(sent)
    }
}
