use thiserror::Error;

/// Why a processor stopped. Bad records never produce one of these: they are dead-lettered.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("an output was not acknowledged by the broker ({topic}): {reason}")]
    Delivery { topic: String, reason: String },
    #[error("the handler asked to stop: {0}")]
    Fatal(String),
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),
}
