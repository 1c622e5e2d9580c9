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
    writer: Arc<Writer>,
    /// Where writer schemas of other ids come from; `None` for an offline codec.
    registry: Option<RegistryClient>,
}

/// A schema-aware serializer with the schema's names resolved once. Resolving names on every
/// record was the largest cost of encoding (profiled: `resolve_names` + validation per call).
struct Writer(apache_avro::writer::datum::GenericDatumWriter<'static>);

impl Writer {
    fn new(schema: &Schema) -> Result<Self, CodecError> {
        // A codec is built once per topic at start-up and lives as long as the process, so
        // leaking its schema copy to get the writer's `'static` borrow costs one schema per
        // topic, once.
        let schema: &'static Schema = Box::leak(Box::new(schema.clone()));
        Ok(Self(
            apache_avro::writer::datum::GenericDatumWriter::builder(schema).build()?,
        ))
    }
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
            writer: Arc::new(Writer::new(&schema)?),
            schema,
            registry: Some(registry.clone()),
        })
    }

    /// A codec bound to `schema_text` under a fixed `id`, with no registry: what tests and
    /// offline tools use. It encodes as a registered codec does (framed with `id`) and decodes
    /// records framed with `id`; any other id is [`CodecError::UnknownSchemaId`].
    pub fn offline(subject: &str, schema_text: &str, id: u32) -> Result<Self, CodecError> {
        let schema = Arc::new(Schema::parse_str(schema_text)?);
        Ok(Self {
            subject: subject.to_string(),
            id,
            writer: Arc::new(Writer::new(&schema)?),
            schema,
            registry: None,
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
    ///
    /// Release builds serialize straight into the schema (no intermediate `Value`, names
    /// resolved once); that path does not validate logical types (a malformed uuid string is
    /// written as is). Debug builds, so every test, take the validating path instead, which
    /// writes the same bytes (tested) and rejects such values.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        if cfg!(debug_assertions) {
            return Ok(frame(self.id, &encode_body(&self.schema, value)?));
        }
        let mut out = Vec::with_capacity(256);
        out.push(crate::MAGIC_BYTE);
        out.extend_from_slice(&self.id.to_be_bytes());
        match self.writer.0.write_ser(&mut out, value) {
            Ok(_) => Ok(out),
            // The direct serializer is stricter about some shapes than resolution; fall back
            // to resolving through a `Value`.
            Err(_) => Ok(frame(self.id, &encode_body(&self.schema, value)?)),
        }
    }

    /// Decodes Confluent-framed bytes into this codec's reader schema.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        let (id, body) = unframe(bytes)?;
        if id == self.id {
            return decode_body(&self.schema, None, body);
        }
        let registry = self
            .registry
            .as_ref()
            .ok_or(CodecError::UnknownSchemaId(id))?;
        let writer = registry.schema_by_id(id).await?;
        decode_body(&writer, Some(&self.schema), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const SCHEMA: &str = r#"{"type":"record","name":"Evt","namespace":"storefleet.test","fields":[
        {"name":"event_id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["UNKNOWN","B","A"],"default":"UNKNOWN"}},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"ship_to","type":["null",{"type":"record","name":"Addr","fields":[{"name":"city","type":"string"}]}],"default":null},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"L","fields":[
            {"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
        {"name":"blob","type":["null","bytes"],"default":null}]}"#;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Kind {
        #[serde(rename = "UNKNOWN")]
        Unknown,
        A,
        B,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Addr {
        city: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct L {
        sku: String,
        qty: i32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Evt {
        event_id: String,
        at: i64,
        kind: Kind,
        note: Option<String>,
        ship_to: Option<Addr>,
        lines: Vec<L>,
        #[serde(with = "apache_avro::serde::bytes_opt")]
        blob: Option<Vec<u8>>,
    }

    fn samples() -> Vec<Evt> {
        let base = Evt {
            event_id: "6f1c2a34-8a7b-4c55-9f0e-2a1b3c4d5e6f".into(),
            at: 1_764_300_000_000,
            // Declared order in Rust differs from the schema's: symbols go by name.
            kind: Kind::A,
            note: Some("n".into()),
            ship_to: Some(Addr {
                city: "Oslo".into(),
            }),
            lines: vec![
                L {
                    sku: "s".into(),
                    qty: 3,
                },
                L {
                    sku: "t".into(),
                    qty: 1,
                },
            ],
            blob: Some(vec![0, 1, 255]),
        };
        vec![
            base.clone(),
            Evt {
                kind: Kind::Unknown,
                note: None,
                ship_to: None,
                lines: vec![],
                blob: None,
                ..base
            },
        ]
    }

    #[tokio::test]
    async fn an_offline_codec_round_trips_its_own_id_and_refuses_others() {
        let codec = TopicCodec::offline("t-value", SCHEMA, 7).unwrap();
        assert_eq!((codec.subject(), codec.schema_id()), ("t-value", 7));
        for evt in samples() {
            let bytes = codec.encode(&evt).unwrap();
            assert_eq!(unframe(&bytes).unwrap().0, 7);
            let back: Evt = crate::from_value(&codec.decode(&bytes).await.unwrap()).unwrap();
            assert_eq!(back, evt);
        }
        let other = TopicCodec::offline("t-value", SCHEMA, 8).unwrap();
        let foreign = other.encode(&samples()[0]).unwrap();
        assert!(matches!(
            codec.decode(&foreign).await,
            Err(CodecError::UnknownSchemaId(8))
        ));
    }

    #[test]
    fn the_cached_writer_writes_exactly_what_value_resolution_writes() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let writer = Writer::new(&schema).unwrap();
        for evt in samples() {
            let direct = writer
                .0
                .write_ser_to_vec(&evt)
                .expect("direct serialization");
            let via_value = encode_body(&schema, &evt).unwrap();
            assert_eq!(direct, via_value, "{evt:?}");
            let back: Evt =
                crate::from_value(&decode_body(&schema, None, &direct).unwrap()).unwrap();
            assert_eq!(back, evt);
        }
    }
}
