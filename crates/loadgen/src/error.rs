//! The errors of the workloads, each keeping its cause.

use futures::channel::oneshot::Canceled;
use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A Kafka client step failed: creating a producer or reader, subscribing, metadata.
    #[error("{what}")]
    KafkaStep {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("produce to {topic}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("delivery canceled")]
    DeliveryCanceled(#[source] Canceled),
    #[error(transparent)]
    Watermarks(#[from] dlq::kafka::KafkaIoError),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Wiring(#[from] wiring::WiringError),
    #[error(transparent)]
    Stack(#[from] stack::StackError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The run could not go on or did not end as it should: an empty catalog, a fleet
    /// that did not become healthy in time.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
