//! The errors of `fleet dlq`, each keeping its cause.

use codec::CodecError;
use rdkafka::error::KafkaError;

use crate::kafka::KafkaIoError;
use crate::{Coordinates, RequestError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the broker failed.
    #[error(transparent)]
    Kafka(#[from] KafkaIoError),
    /// Producing a redriven record or its log entry failed.
    #[error(transparent)]
    Produce(#[from] KafkaError),
    /// The producer went away before the broker acknowledged a record.
    #[error("the producer was dropped before the delivery report")]
    ProducerDropped,
    /// The command line or the plan does not fit the topology.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The topic or position is not one `fleet dlq` can read.
    #[error("{0}")]
    Invalid(String),
    /// The schema registry could not be asked for a writer schema.
    #[error("fetching schema {id} from the registry at {url}")]
    Registry {
        id: u32,
        url: String,
        #[source]
        source: CodecError,
    },
    /// The record at `at` is not a dead letter that can be decoded.
    #[error("{at} is not a readable dead letter: {reason}")]
    NotADeadLetter { at: Coordinates, reason: String },
    #[error("{topic} has no partition {partition} on the broker")]
    NoPartition { topic: String, partition: i32 },
    #[error("no record at {at}: partition {} holds offsets {low}..{high}", .at.partition)]
    OutOfRange {
        at: Coordinates,
        low: i64,
        high: i64,
    },
    #[error("no record at {0} (compacted away, or a transaction marker)")]
    NoRecord(Coordinates),
    #[error("{failed} of {total} redrive(s) failed")]
    RedrivesFailed { failed: usize, total: usize },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error` and its causes on one line, `a: b: c` (as `anyhow` prints `{:#}`).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        line.push_str(": ");
        line.push_str(&next.to_string());
        cause = next.source();
    }
    line
}
