//! The tool's Kafka I/O: watermarks, bounded reads, the redrive-log topic and the producer.
//!
//! Reads never join a group and never commit: partitions are assigned explicitly and read
//! from a start offset up to the high watermark captured before reading, then the read stops
//! (no tailing). They run on the blocking pool, as librdkafka's poll blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use topology::Topology;
use tracing::warn;

use crate::redrive_log::{self, RedriveHistory};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// A read that makes no progress for this long fails instead of hanging.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a read, a watermark query or the redrive log's creation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaIoError {
    #[error("creating a Kafka {client}")]
    Client {
        client: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("reading topic metadata from {bootstrap}")]
    Metadata {
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading watermarks of {topic}/{partition}")]
    Watermarks {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("topic `{topic}` does not exist on the broker at {bootstrap}")]
    NoTopic { topic: String, bootstrap: String },
    #[error("assigning the partitions of {topic}")]
    Assign {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading {topic} stalled; partitions not finished: {pending:?}")]
    Stalled {
        topic: String,
        pending: BTreeSet<i32>,
    },
    #[error("creating the redrive log")]
    CreateLog(#[source] KafkaError),
    #[error("creating the redrive log {name}: {code}")]
    LogRefused {
        name: String,
        code: RDKafkaErrorCode,
    },
    #[error("the Kafka reading task failed")]
    Task(#[from] tokio::task::JoinError),
}

fn client(client: &'static str) -> impl FnOnce(KafkaError) -> KafkaIoError {
    move |source| KafkaIoError::Client { client, source }
}

/// One record as read, bytes verbatim.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Offsets `start..end` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Low and high watermark of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

impl Watermarks {
    /// Every record of the partition, as of now.
    pub fn everything(&self) -> PartitionRange {
        PartitionRange {
            partition: self.partition,
            start: self.low,
            end: self.high,
        }
    }

    /// The last `n` offsets of the partition (fewer when it holds fewer).
    pub fn newest(&self, n: usize) -> PartitionRange {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        PartitionRange {
            partition: self.partition,
            start: self.high.saturating_sub(n).max(self.low),
            end: self.high,
        }
    }

    /// Offsets in the partition now.
    pub fn count(&self) -> i64 {
        (self.high - self.low).max(0)
    }
}

fn consumer(bootstrap: &str) -> Result<BaseConsumer, KafkaIoError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fleet-dlq")
        // librdkafka wants a group id to assign partitions; this one never joins (no
        // subscribe) and never commits.
        .set("group.id", "storefleet.dlq-tool")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // A start offset retention deleted meanwhile reads from the new beginning.
        .set("auto.offset.reset", "earliest")
        // Records of aborted transactions are not dead letters anyone meant to write.
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(client("consumer"))
}

/// Watermarks of every partition of each topic; `None` for a topic the broker lacks. One
/// metadata request for all topics: asking for a missing topic by name could create it.
pub async fn watermarks(
    bootstrap: &str,
    topics: Vec<String>,
) -> Result<BTreeMap<String, Option<Vec<Watermarks>>>, KafkaIoError> {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer = consumer(&bootstrap)?;
        let metadata = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|source| KafkaIoError::Metadata {
                bootstrap: bootstrap.clone(),
                source,
            })?;
        let mut out = BTreeMap::new();
        for topic in topics {
            let partitions: Option<Vec<i32>> = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().iter().map(|p| p.id()).collect());
            let marks = match partitions {
                None => None,
                Some(ids) => Some(
                    ids.into_iter()
                        .map(|partition| {
                            let (low, high) = consumer
                                .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
                                .map_err(|source| KafkaIoError::Watermarks {
                                    topic: topic.clone(),
                                    partition,
                                    source,
                                })?;
                            Ok(Watermarks {
                                partition,
                                low,
                                high,
                            })
                        })
                        .collect::<Result<Vec<_>, KafkaIoError>>()?,
                ),
            };
            out.insert(topic, marks);
        }
        Ok(out)
    })
    .await?
}

/// Watermarks of one topic, which must exist.
pub async fn topic_watermarks(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<Watermarks>, KafkaIoError> {
    match watermarks(bootstrap, vec![topic.to_string()])
        .await?
        .remove(topic)
    {
        Some(Some(marks)) => Ok(marks),
        _ => Err(KafkaIoError::NoTopic {
            topic: topic.to_string(),
            bootstrap: bootstrap.to_string(),
        }),
    }
}

/// Every record of `topic` in `ranges`, in partition then offset order. Offsets in a range
/// with no record (compaction, transaction markers) are simply absent.
pub async fn read(
    bootstrap: &str,
    topic: &str,
    ranges: Vec<PartitionRange>,
) -> Result<Vec<RawRecord>, KafkaIoError> {
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic, &ranges)).await?
}

fn read_blocking(
    bootstrap: &str,
    topic: &str,
    ranges: &[PartitionRange],
) -> Result<Vec<RawRecord>, KafkaIoError> {
    let ranges: BTreeMap<i32, PartitionRange> = ranges
        .iter()
        .filter(|r| r.start < r.end)
        .map(|r| (r.partition, *r))
        .collect();
    let mut out = Vec::new();
    if ranges.is_empty() {
        return Ok(out);
    }
    let consumer = consumer(bootstrap)?;
    let unassigned = |source| KafkaIoError::Assign {
        topic: topic.to_string(),
        source,
    };
    let mut assignment = TopicPartitionList::new();
    for range in ranges.values() {
        assignment
            .add_partition_offset(topic, range.partition, Offset::Offset(range.start))
            .map_err(unassigned)?;
    }
    consumer.assign(&assignment).map_err(unassigned)?;
    let mut pending: BTreeSet<i32> = ranges.keys().copied().collect();
    let mut last_progress = Instant::now();
    while !pending.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let partition = message.partition();
                let Some(range) = ranges.get(&partition) else {
                    continue;
                };
                let offset = message.offset();
                if offset < range.end && pending.contains(&partition) {
                    out.push(RawRecord {
                        partition,
                        offset,
                        timestamp: message.timestamp().to_millis(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                    });
                }
                if offset + 1 >= range.end {
                    pending.remove(&partition);
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                pending.remove(&partition);
            }
            Some(Err(error)) => warn!(topic, %error, "consumer error while reading"),
            None if last_progress.elapsed() > STALL_TIMEOUT => {
                return Err(KafkaIoError::Stalled {
                    topic: topic.to_string(),
                    pending,
                })
            }
            None => {}
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// The redrive log folded, or an empty history when the log topic does not exist yet.
pub async fn read_history(bootstrap: &str) -> Result<RedriveHistory, KafkaIoError> {
    let marks = watermarks(bootstrap, vec![redrive_log::TOPIC.to_string()])
        .await?
        .remove(redrive_log::TOPIC)
        .flatten()
        .unwrap_or_default();
    let ranges = marks
        .iter()
        .map(|m| PartitionRange {
            partition: m.partition,
            start: m.low,
            end: m.high,
        })
        .collect();
    let mut history = RedriveHistory::default();
    for record in read(bootstrap, redrive_log::TOPIC, ranges).await? {
        let applied = history.apply(
            record.key.as_deref().unwrap_or_default(),
            record.value.as_deref().unwrap_or_default(),
        );
        if let Err(error) = applied {
            warn!(
                topic = redrive_log::TOPIC,
                partition = record.partition,
                offset = record.offset,
                %error,
                "skipping a malformed redrive-log record"
            );
        }
    }
    Ok(history)
}

/// Creates the redrive log if it is missing, shaped as the topology declares it or, when it
/// does not, with one partition, cleanup delete and 30 days' retention.
pub async fn ensure_log_topic(bootstrap: &str, topology: &Topology) -> Result<(), KafkaIoError> {
    let declared = topology.topic(redrive_log::TOPIC);
    let partitions = declared.map_or(redrive_log::DEFAULT_PARTITIONS, |t| {
        i32::try_from(t.partitions).unwrap_or(redrive_log::DEFAULT_PARTITIONS)
    });
    let cleanup = declared.map_or("delete", |t| t.cleanup_policy.kafka_value());
    let retention = declared
        .map_or(redrive_log::DEFAULT_RETENTION_MS, |t| t.retention_ms)
        .to_string();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(client("admin client"))?;
    let topic = NewTopic::new(redrive_log::TOPIC, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", cleanup)
        .set("retention.ms", &retention);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(KafkaIoError::CreateLog)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(KafkaIoError::LogRefused { name, code }),
        }
    }
    Ok(())
}

/// The fleet's idempotent, acks=all producer.
pub fn producer(bootstrap: &str) -> Result<FutureProducer, KafkaIoError> {
    runtime::producer_config(bootstrap, "fleet-dlq")
        .create()
        .map_err(client("producer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_from_watermarks_stay_inside_the_partition() {
        let marks = Watermarks {
            partition: 2,
            low: 10,
            high: 25,
        };
        assert_eq!(marks.count(), 15);
        let all = marks.everything();
        assert_eq!((all.partition, all.start, all.end), (2, 10, 25));
        assert_eq!(marks.newest(5).start, 20);
        assert_eq!(marks.newest(100).start, 10, "not below the low watermark");
        assert_eq!(marks.newest(usize::MAX).start, 10);
        assert_eq!(marks.newest(0).start, 25, "an empty range");
    }
}
