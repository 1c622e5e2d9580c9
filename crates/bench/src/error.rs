//! The errors of the benchmarks, each keeping its cause.

use futures::channel::oneshot::Canceled;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command line argument out of range.
    #[error("{0}")]
    Invalid(String),
    /// Something the bench needs is not in the topology (a processor, a port, a schema).
    #[error("{0}")]
    Missing(String),
    /// A bench's own check of what it measured failed, or a run did not get through.
    #[error("{0}")]
    Check(String),
    #[error("no schema registry at {url} (run `fleet stack up`)")]
    NoRegistry {
        url: String,
        #[source]
        source: Box<Error>,
    },
    #[error("in-process registry did not start")]
    RegistryDidNotStart(#[source] tokio::sync::oneshot::error::RecvError),
    #[error("the snapshot was refused")]
    SnapshotRefused,
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    OtherIo(#[from] std::io::Error),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A Kafka client step failed, such as creating a producer.
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
    #[error("creating {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("the stack's PostgreSQL (is it up? `fleet stack up`)")]
    StackPostgres(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Recs(#[from] recommendations::RecsError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    #[error(transparent)]
    Wiring(#[from] wiring::WiringError),
    #[error(transparent)]
    Stack(#[from] stack::StackError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Loadgen(#[from] loadgen::Error),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Cdc(#[from] postgres_cdc::CdcError),
    #[error(transparent)]
    Avro(#[from] apache_avro::Error),
    #[error(transparent)]
    Address(#[from] std::net::AddrParseError),
    #[error(transparent)]
    Int(#[from] std::num::TryFromIntError),
    #[error("a lock was poisoned")]
    Poisoned,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns `Error::Check` with the message unless `cond` holds (the benches' `ensure!`).
macro_rules! check {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::Error::Check(format!($($message)+)));
        }
    };
}
pub(crate) use check;

/// A `None` as `Error::Missing` with `message`.
pub(crate) fn missing(message: impl Into<String>) -> impl FnOnce() -> Error {
    move || Error::Missing(message.into())
}
