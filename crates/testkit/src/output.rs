//! What a handler sent, decoded again with its topic's schema.

use std::collections::HashMap;

use codec::{TopicCodec, Value};
use runtime::step;
use runtime::OutRecord;
use serde::de::DeserializeOwned;
use topology::ValueFormat;

use crate::TestkitError;

/// One record a handler sent.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    /// Decoded by the topic's format (Avro: with its schema); `None` for a tombstone.
    pub value: Option<Value>,
    pub headers: Vec<(String, String)>,
    /// The bytes as they would be produced.
    pub payload: Option<Vec<u8>>,
}

impl Output {
    pub(crate) async fn from_record(
        record: OutRecord,
        codecs: &HashMap<String, TopicCodec>,
        formats: &HashMap<String, ValueFormat>,
    ) -> Result<Self, TestkitError> {
        let value = step::decode_value(
            &record.topic,
            formats.get(&record.topic).copied(),
            codecs.get(&record.topic),
            record.payload.as_deref(),
        )
        .await?;
        Ok(Self {
            topic: record.topic,
            key: record.key,
            value,
            headers: record.headers,
            payload: record.payload,
        })
    }

    /// The key as UTF-8 (entity ids on `key: string` topics).
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value as a domain type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, TestkitError> {
        let value = self.value.as_ref().ok_or_else(|| {
            TestkitError::Setup(format!("a tombstone on `{}`, not a value", self.topic))
        })?;
        Ok(codec::from_value(value)?)
    }

    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The values `outputs` sent to `topic`, in order, as domain types.
pub fn decoded<T: DeserializeOwned>(
    outputs: &[Output],
    topic: &str,
) -> Result<Vec<T>, TestkitError> {
    outputs
        .iter()
        .filter(|o| o.topic == topic)
        .map(Output::decode)
        .collect()
}
