//! The dead-letter record (schemas/dlq/DeadLetter.avsc): the original bytes, where they came
//! from, and why they could not be processed. The same facts are copied into headers so
//! tools that do not decode Avro can still triage.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeadLetterErrorKind {
    Unknown,
    Decode,
    Schema,
    Validation,
    Processing,
    RetriesExhausted,
}

impl DeadLetterErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterErrorKind::Unknown => "UNKNOWN",
            DeadLetterErrorKind::Decode => "DECODE",
            DeadLetterErrorKind::Schema => "SCHEMA",
            DeadLetterErrorKind::Validation => "VALIDATION",
            DeadLetterErrorKind::Processing => "PROCESSING",
            DeadLetterErrorKind::RetriesExhausted => "RETRIES_EXHAUSTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterHeader {
    pub key: String,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_value: Option<Vec<u8>>,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub original_timestamp: Option<i64>,
    pub original_schema_id: Option<i32>,
    pub processor: String,
    pub consumer_group: String,
    pub error_kind: DeadLetterErrorKind,
    pub reason: String,
    pub attempts: i32,
    pub failed_at: i64,
    pub headers: Vec<DeadLetterHeader>,
}

/// Header names set on every dead-letter record.
pub mod header {
    pub const ERROR_KIND: &str = "dlq.error.kind";
    pub const REASON: &str = "dlq.error.reason";
    pub const SOURCE_TOPIC: &str = "dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "dlq.source.offset";
    pub const PROCESSOR: &str = "dlq.processor";
    pub const ATTEMPTS: &str = "dlq.attempts";
}

impl DeadLetter {
    /// The (name, value) headers that mirror this record's triage facts.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (header::ERROR_KIND, self.error_kind.as_str().to_string()),
            (header::REASON, self.reason.clone()),
            (header::SOURCE_TOPIC, self.source_topic.clone()),
            (header::SOURCE_PARTITION, self.source_partition.to_string()),
            (header::SOURCE_OFFSET, self.source_offset.to_string()),
            (header::PROCESSOR, self.processor.clone()),
            (header::ATTEMPTS, self.attempts.to_string()),
        ]
    }
}
