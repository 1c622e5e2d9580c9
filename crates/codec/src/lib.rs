//! Avro over Kafka, the Confluent way: every value is `0x00`, a 4-byte big-endian schema id,
//! then the Avro binary body. This crate owns that framing, the schema registry client, and
//! the per-topic encoders and decoders the runtime uses.
//!
//! Guarantees: an encoded record always carries the id of the exact schema it was written
//! with (one encoder per topic schema, never per subject only); decoding resolves the
//! writer's schema (fetched by id, cached forever: ids are immutable) against the reader's
//! schema from `schemas/`, so an old reader reads a newer compatible writer's records.
//! Malformed bytes are a typed [`CodecError`], never a panic.
//!
//! Subjects follow Confluent's TopicNameStrategy (`<topic>-value`, `<topic>-key`). The fleet
//! uses this small client rather than `schema_registry_converter`, whose encoder caches the
//! schema id by subject only (FACTS.md), while the runtime needs resolution against the
//! reader schema from `schemas/`.

mod avro;
mod client;
mod error;
mod framing;
mod topics;

pub use apache_avro::types::Value;
pub use apache_avro::Schema;
pub use avro::{decode_body, encode_body, from_value};
pub use client::RegistryClient;
pub use error::CodecError;
pub use framing::{frame, unframe, MAGIC_BYTE};
pub use topics::TopicCodec;
