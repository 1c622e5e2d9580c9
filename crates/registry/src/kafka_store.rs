//! Durability: the journal is a single-partition compacted Kafka topic (default `_schemas`)
//! holding Confluent-shaped records (see [`crate::records`]).
//!
//! On start the topic is created if missing (1 partition, `cleanup.policy=compact`) and read
//! from the beginning up to the high watermark taken before reading, so every write
//! acknowledged before this process started is in the state it serves. Writes use an
//! idempotent producer with `acks=all`, one record at a time, in order; the caller applies a
//! record to its state only after Kafka acknowledged it.
//!
//! One registry process per topic: the registry does not follow writes made by others.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::error::JournalError;
use crate::records::Record;
use crate::store::Store;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct KafkaJournal {
    bootstrap_servers: String,
    topic: String,
    producer: FutureProducer,
}

impl KafkaJournal {
    /// Ensures the topic exists with one partition and prepares the producer.
    pub async fn open(bootstrap_servers: &str, topic: &str) -> Result<Self, JournalError> {
        ensure_topic(bootstrap_servers, topic).await?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("message.timeout.ms", TIMEOUT.as_millis().to_string())
            .create()
            .map_err(|error| JournalError::kafka("create producer", error))?;
        Ok(Self {
            bootstrap_servers: bootstrap_servers.to_string(),
            topic: topic.to_string(),
            producer,
        })
    }

    /// Writes `records` in order, each acknowledged by all in-sync replicas before the next.
    pub async fn append(&self, records: &[Record]) -> Result<(), JournalError> {
        for record in records {
            let (key, value) = record.encode();
            let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.topic)
                .partition(0)
                .key(&key);
            if let Some(value) = &value {
                message = message.payload(value);
            }
            self.producer
                .send(message, TIMEOUT)
                .await
                .map_err(|(error, _)| JournalError::kafka("write schema record", error))?;
        }
        Ok(())
    }

    /// Reads the whole topic into a fresh [`Store`].
    pub async fn replay(&self) -> Result<Store, JournalError> {
        let bootstrap_servers = self.bootstrap_servers.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || replay_blocking(&bootstrap_servers, &topic))
            .await
            .map_err(JournalError::Replay)?
    }
}

async fn ensure_topic(bootstrap_servers: &str, topic: &str) -> Result<(), JournalError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .map_err(|error| JournalError::kafka("create admin client", error))?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    // Replication -1 asks for the broker's default (KIP-464); a broker that refuses it
    // gets an explicit 1, which is what a single local broker can hold anyway.
    for replication in [-1, 1] {
        let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
            .set("cleanup.policy", "compact");
        let results = admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|error| JournalError::kafka("create topic", error))?;
        match results.into_iter().next() {
            Some(Ok(_)) => {
                info!(topic, "created schema topic");
                return Ok(());
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::InvalidReplicationFactor))) if replication == -1 => {
                continue
            }
            Some(Err((_, code))) => {
                return Err(JournalError::CreateTopic {
                    topic: topic.to_string(),
                    reason: code.to_string(),
                })
            }
            None => break,
        }
    }
    Err(JournalError::CreateTopic {
        topic: topic.to_string(),
        reason: "no result from the broker".to_string(),
    })
}

fn replay_blocking(bootstrap_servers: &str, topic: &str) -> Result<Store, JournalError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        // Partitions are assigned, never subscribed: the id only satisfies the client.
        .set("group.id", "storefleet-registry-replay")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|error| JournalError::kafka("create replay consumer", error))?;
    let partitions = partition_count(&consumer, topic)?;
    if partitions != 1 {
        return Err(JournalError::Partitions {
            topic: topic.to_string(),
            partitions,
        });
    }
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, TIMEOUT)
        .map_err(|error| JournalError::kafka("read high watermark", error))?;
    let mut store = Store::default();
    if high <= low {
        info!(topic, records = 0, "schema journal replayed");
        return Ok(store);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|error| JournalError::kafka("assign partition", error))?;
    consumer
        .assign(&assignment)
        .map_err(|error| JournalError::kafka("assign partition", error))?;
    let mut applied = 0_u64;
    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                match Record::decode(message.key().unwrap_or_default(), message.payload()) {
                    Ok(Some(record)) => {
                        store.apply(&record);
                        applied += 1;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        warn!(topic, offset = message.offset(), %error, "skipping journal record")
                    }
                }
                if message.offset() + 1 >= high {
                    break;
                }
            }
            // Compaction may leave the last offsets empty: the end of the partition is the end.
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => warn!(topic, %error, "replay consumer error"),
            None if last_progress.elapsed() > TIMEOUT => {
                return Err(JournalError::kafka(
                    format!("replay stalled before offset {high}"),
                    KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                ));
            }
            None => {}
        }
    }
    info!(
        topic,
        records = applied,
        high_watermark = high,
        "schema journal replayed"
    );
    Ok(store)
}

/// Partitions of `topic`, waiting a little for a topic just created to show up in metadata.
fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<usize, JournalError> {
    let started = Instant::now();
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|error| JournalError::kafka("read topic metadata", error))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|found| found.name() == topic)
            .map_or(0, |found| found.partitions().len());
        if partitions > 0 || started.elapsed() > TIMEOUT {
            return Ok(partitions);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
