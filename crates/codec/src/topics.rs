//! Per-topic encoder/decoder bound to one registered schema.

use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::Serialize;

use crate::{decode_body, encode_body, frame, unframe, CodecError, RegistryClient};

/// The codec of one Avro topic side (key or value): encodes with the schema from `schemas/`
/// under its registered id, decodes any registered writer schema into that reader schema.
#[derive(Clone)]
pub struct TopicCodec {
    subject: String,
    id: u32,
    schema: Arc<Schema>,
    registry: RegistryClient,
}

impl TopicCodec {
    /// Registers `schema_text` under `subject` (TopicNameStrategy: `<topic>-value`) and
    /// binds the codec to the id the registry returns.
    pub async fn register(
        registry: &RegistryClient,
        subject: &str,
        schema_text: &str,
    ) -> Result<Self, CodecError> {
        let schema = Arc::new(Schema::parse_str(schema_text)?);
        let id = registry.register(subject, schema_text).await?;
        Ok(Self {
            subject: subject.to_string(),
            id,
            schema,
            registry: registry.clone(),
        })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn schema_id(&self) -> u32 {
        self.id
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Confluent-framed Avro bytes of `value`.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(frame(self.id, &encode_body(&self.schema, value)?))
    }

    /// Decodes Confluent-framed bytes into this codec's reader schema.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        let (id, body) = unframe(bytes)?;
        if id == self.id {
            return decode_body(&self.schema, None, body);
        }
        let writer = self.registry.schema_by_id(id).await?;
        decode_body(&writer, Some(&self.schema), body)
    }
}
