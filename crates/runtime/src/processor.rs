//! What a processor implements, and the values the runtime hands it. No Kafka types here: a
//! processor's handler is tested without a broker through `crates/testkit`.

use std::collections::HashMap;
use std::future::Future;

use codec::{TopicCodec, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::topic::Topic;

/// Any error kept as the cause of another (the `#[source]` of [`HandlerError`], a deferred
/// [`Effect`]'s failure).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a handler failed; [`crate::policy::decide`] turns it into retry, dead-letter or stop.
/// Each kind has a message saying what was being done and, when something else failed, that
/// error as its source: [`crate::error_chain`] renders both as one line (the dead letter's
/// reason).
#[derive(Debug, Error)]
pub enum HandlerError {
    /// The record breaks the domain's rules: retrying cannot help (dead-lettered).
    #[error("invalid record: {message}")]
    Invalid {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A dependency failed; the same record may succeed later (retried with backoff).
    #[error("transient failure: {message}")]
    Transient {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Continuing would be wrong (a broken invariant, a bug): the processor stops.
    #[error("fatal: {message}")]
    Fatal {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl HandlerError {
    /// The record itself is wrong: `message` says how.
    pub fn invalid(message: impl Into<String>) -> Self {
        HandlerError::Invalid {
            message: message.into(),
            source: None,
        }
    }

    /// `cause` failed while doing `context` (e.g. "reading the orders table"); worth a retry.
    pub fn transient(context: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        HandlerError::Transient {
            message: context.into(),
            source: Some(cause.into()),
        }
    }

    /// The processor must stop: `message` says why.
    pub fn fatal(message: impl Into<String>) -> Self {
        HandlerError::Fatal {
            message: message.into(),
            source: None,
        }
    }

    /// The same failure, with `cause` kept as its source.
    pub fn caused_by(self, cause: impl Into<BoxError>) -> Self {
        let cause = Some(cause.into());
        match self {
            HandlerError::Invalid { message, .. } => HandlerError::Invalid {
                message,
                source: cause,
            },
            HandlerError::Transient { message, .. } => HandlerError::Transient {
                message,
                source: cause,
            },
            HandlerError::Fatal { message, .. } => HandlerError::Fatal {
                message,
                source: cause,
            },
        }
    }
}

/// One decoded input record.
#[derive(Debug, Clone)]
pub struct Input {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub value: Option<Value>,
    pub timestamp_ms: Option<i64>,
    /// The record's headers (name, value); a header without a value has an empty one.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Input {
    /// The key as UTF-8 (the entity id on `key: string` topics).
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value as a domain type; a shape mismatch is an invalid record.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        let value = self
            .value
            .as_ref()
            .ok_or_else(|| HandlerError::invalid("tombstone where a value was expected"))?;
        codec::from_value(value).map_err(|e| HandlerError::invalid("value shape").caused_by(e))
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A stable identity of this record, for deriving output ids.
    pub fn coordinates(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// An encoded output waiting to be produced.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    /// Explicit partition (changelog records); `None` lets the key choose.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// A side effect outside Kafka (a database write) that must be done before the record that
/// caused it is committed. It must be idempotent (a record can be handled again) and retry
/// transient failures itself; an `Err` stops the processor (the restart handles the record
/// again).
pub type Effect = futures::future::BoxFuture<'static, Result<(), BoxError>>;

/// The outputs of one handled record. Encoding happens here, at `send`, so a value that does
/// not fit its topic's schema is reported against the input that produced it.
pub struct Outputs<'a> {
    codecs: &'a HashMap<String, TopicCodec>,
    records: Vec<OutRecord>,
    effects: Vec<Effect>,
}

impl<'a> Outputs<'a> {
    pub(crate) fn new(codecs: &'a HashMap<String, TopicCodec>) -> Self {
        Self {
            codecs,
            records: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// Queues `value` for `topic` under a string key.
    pub fn send<T: Serialize>(
        &mut self,
        topic: &Topic<T>,
        key: &str,
        value: &T,
    ) -> Result<(), HandlerError> {
        let topic = topic.name();
        let codec = self.codecs.get(topic).ok_or_else(|| {
            HandlerError::fatal(format!(
                "`{topic}` is not a declared Avro output of this processor"
            ))
        })?;
        let payload = codec.encode(value).map_err(|e| {
            HandlerError::fatal(format!("output for `{topic}` does not fit its schema"))
                .caused_by(e)
        })?;
        self.records.push(OutRecord {
            topic: topic.to_string(),
            partition: None,
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload),
            headers: Vec::new(),
        });
        Ok(())
    }

    /// Encodes `value` as `topic`'s schema would (Confluent framing), without sending it:
    /// for embedding a record in another, e.g. the original bytes of a dead letter.
    pub fn encode<T: Serialize>(
        &self,
        topic: &Topic<T>,
        value: &T,
    ) -> Result<Vec<u8>, HandlerError> {
        let topic = topic.name();
        let codec = self.codecs.get(topic).ok_or_else(|| {
            HandlerError::fatal(format!("`{topic}` has no Avro codec in this processor"))
        })?;
        codec.encode(value).map_err(|e| {
            HandlerError::fatal(format!("value for `{topic}` does not fit its schema")).caused_by(e)
        })
    }

    /// Queues already-encoded bytes for `topic` (see [`Outputs::encode`]), with headers.
    pub fn send_raw(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        headers: Vec<(String, String)>,
    ) -> Result<(), HandlerError> {
        if !self.codecs.contains_key(topic) {
            return Err(HandlerError::fatal(format!(
                "`{topic}` is not a declared output of this processor"
            )));
        }
        self.records.push(OutRecord {
            topic: topic.to_string(),
            partition: None,
            key,
            payload: Some(payload),
            headers,
        });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Awaits `effect` before the record is committed (after its outputs are acknowledged,
    /// off the handler's path): many records' effects can be grouped (one database
    /// transaction for a batch of orders) without holding up the partition. The work must
    /// already be under way when the handler returns (queued to a writer): the acker polls the
    /// future only when it reaches this record, one record at a time.
    pub fn defer(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub(crate) fn into_records(self) -> Vec<OutRecord> {
        self.records
    }

    pub(crate) fn into_parts(self) -> (Vec<OutRecord>, Vec<Effect>) {
        (self.records, self.effects)
    }
}

/// A stream processor: its decisions (in plain modules) and the I/O of its own services (a
/// database, a gateway); the runtime owns the Kafka side. The runtime calls `handle` once per input record, in
/// offset order per partition; whatever it sends is produced before the input's offset is
/// committed. It must be idempotent: after a crash the same record can be handled again.
pub trait Processor: Send + 'static {
    fn handle(
        &mut self,
        input: &Input,
        out: &mut Outputs<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A processor with keyed state and durable timers (see [`crate::state`]). The runtime
/// restores the state of each input partition before handing it records, writes what a
/// handler changed to the changelog after its outputs are acknowledged, skips inputs whose
/// effects are already in the state, and rolls the state back when a handler fails.
pub trait StatefulProcessor: Send + 'static {
    type Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The store's name: its changelog topic is `<group>-<store>-changelog`. Empty for a
    /// stateless processor (no changelog, no restore).
    const STORE: &'static str;

    fn handle(
        &mut self,
        input: &Input,
        state: &mut crate::state::State<'_, Self::Value>,
        out: &mut Outputs<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// A timer set with [`crate::state::State::set_timer`] came due. It has already been
    /// removed from the state; set it again to repeat.
    fn on_timer(
        &mut self,
        timer: &crate::state::Timer,
        state: &mut crate::state::State<'_, Self::Value>,
        out: &mut Outputs<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Runs a stateless [`Processor`] on the stateful driver with an empty store.
pub struct Stateless<P>(pub P);

impl<P: Processor> StatefulProcessor for Stateless<P> {
    type Value = ();
    const STORE: &'static str = "";

    async fn handle(
        &mut self,
        input: &Input,
        _state: &mut crate::state::State<'_, ()>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        self.0.handle(input, out).await
    }

    async fn on_timer(
        &mut self,
        _timer: &crate::state::Timer,
        _state: &mut crate::state::State<'_, ()>,
        _out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// A stateless processor whose records are independent across keys, run by
/// [`crate::run_pipelined`]: records with different keys are handled concurrently (their
/// handlers wait on I/O such as a payment gateway), records with the same key one after
/// another in offset order. Offsets are still committed in order, each only after its own
/// outputs and those of every earlier record of its partition are acknowledged.
pub trait ConcurrentProcessor: Send + Sync + 'static {
    fn handle(
        &self,
        input: &Input,
        out: &mut Outputs<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}
