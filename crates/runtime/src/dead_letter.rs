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

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;
    use crate::policy::{decide, Action, Failure};
    use crate::{HandlerError, RuntimeConfig};

    #[test]
    fn a_dead_letter_reason_carries_the_cause_chain() {
        let config = RuntimeConfig::for_tests("orders.placed.v1");
        let message = OwnedMessage::new(
            Some(b"not avro".to_vec()),
            Some(b"order-1".to_vec()),
            "orders.placed.v1".into(),
            Timestamp::CreateTime(1_700_000_000_000),
            2,
            41,
            None,
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let failure = Failure::Handler(HandlerError::transient("writing the order row", refused));
        let attempts = config.retry.max_attempts;
        let Action::DeadLetter(kind) = decide(&failure, attempts, &config.retry) else {
            panic!("a transient failure out of retries is dead-lettered");
        };
        let letter = crate::driver::dead_letter(&config, &message, kind, &failure, attempts);
        assert_eq!(letter.error_kind, DeadLetterErrorKind::RetriesExhausted);
        assert_eq!(
            letter.reason,
            "handler: transient failure: writing the order row: refused"
        );
        let reason_header = letter
            .headers()
            .into_iter()
            .find(|(name, _)| *name == header::REASON)
            .map(|(_, value)| value);
        assert_eq!(reason_header.as_deref(), Some(letter.reason.as_str()));
        assert_eq!((letter.source_partition, letter.source_offset), (2, 41));
    }
}
