//! Dead letters and their original bytes decoded with writer schemas from the registry.
//!
//! A record that is not a readable dead letter is reported per record and never stops the
//! command; a registry that cannot be reached stops it, since every record would otherwise
//! look broken (and a redrive would quietly skip them all).

use apache_avro::Schema;
use codec::{CodecError, RegistryClient};
use runtime::DeadLetter;
use serde_json::{json, Value as Json};

use crate::letter::{avro_to_json, bytes_to_json, decode_dead_letter};

pub struct Decoder {
    registry: RegistryClient,
    /// The topology's DeadLetter schema, read as (resolves older and newer writers).
    reader: Option<Schema>,
}

impl Decoder {
    pub fn new(registry_url: &str, reader: Option<&Schema>) -> Self {
        Self {
            registry: RegistryClient::new(registry_url),
            reader: reader.cloned(),
        }
    }

    /// The dead letter in a DLQ record's value. Outer error: the registry failed (stop);
    /// inner error: this record is not a readable dead letter (report it, go on).
    pub async fn dead_letter(
        &self,
        value: Option<&[u8]>,
    ) -> crate::Result<Result<DeadLetter, String>> {
        let Some(value) = value else {
            return Ok(Err("the record has no value".into()));
        };
        let (id, body) = match codec::unframe(value) {
            Ok(split) => split,
            Err(error) => return Ok(Err(error.to_string())),
        };
        let writer = match self.registry.schema_by_id(id).await {
            Ok(schema) => schema,
            Err(error) if registry_failed(&error) => {
                return Err(crate::Error::Registry {
                    id,
                    url: self.registry.base_url().to_string(),
                    source: error,
                })
            }
            Err(error) => return Ok(Err(error.to_string())),
        };
        Ok(decode_dead_letter(&writer, self.reader.as_ref(), body).map_err(|e| e.to_string()))
    }

    /// Original key or value bytes for reading: Confluent-framed Avro decoded with its
    /// writer schema (`{"format": "avro", "schema_id", "schema", "value"}`), anything else
    /// as text or hex (with `avro_error` when it looked framed but did not decode).
    pub async fn original(&self, bytes: Option<&[u8]>) -> Json {
        let Some(bytes) = bytes else {
            return Json::Null;
        };
        let Ok((id, body)) = codec::unframe(bytes) else {
            return bytes_to_json(bytes);
        };
        let decoded = match self.registry.schema_by_id(id).await {
            Ok(writer) => codec::decode_body(&writer, None, body).map(|value| (writer, value)),
            Err(error) => Err(error),
        };
        match decoded {
            Ok((writer, value)) => json!({
                "format": "avro",
                "schema_id": id,
                "schema": schema_name(&writer),
                "value": avro_to_json(&value),
            }),
            Err(error) => {
                let mut shown = bytes_to_json(bytes);
                shown["avro_error"] = Json::String(error.to_string());
                shown
            }
        }
    }
}

fn registry_failed(error: &CodecError) -> bool {
    matches!(
        error,
        CodecError::RegistryUnreachable(_) | CodecError::Registry(_)
    )
}

fn schema_name(schema: &Schema) -> Json {
    match schema {
        Schema::Record(r) => Json::String(r.name.fullname(None)),
        _ => Json::Null,
    }
}
