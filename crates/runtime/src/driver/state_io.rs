//! The Kafka side of state: the changelog topic (created like Kafka Streams creates its
//! internal topics), reading a changelog partition into a store, and snapshot locations.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;

use crate::state::{decode_changelog, Decoded, PartitionStore, Restorer};
use crate::{RuntimeConfig, RuntimeError};

pub fn changelog_topic(config: &RuntimeConfig, store: &str) -> String {
    format!("{}-{store}-changelog", config.group)
}

/// Where snapshots of `store` partitions live: `<state_dir>/<group>/<store>/p<N>.json`.
pub fn snapshot_path(config: &RuntimeConfig, store: &str, partition: i32) -> PathBuf {
    config
        .state_dir
        .join(&config.group)
        .join(store)
        .join(format!("p{partition}.json"))
}

/// The number of partitions every input has; inputs of a stateful processor must be
/// co-partitioned (same count), or one key's records would land in different stores.
pub fn input_partitions(config: &RuntimeConfig) -> Result<i32, RuntimeError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.stack.bootstrap_servers)
        .create()?;
    let mut counts = Vec::new();
    for input in &config.inputs {
        let metadata = consumer.fetch_metadata(Some(&input.topic), Duration::from_secs(10))?;
        let count = metadata
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        counts.push((
            input.topic.clone(),
            i32::try_from(count).unwrap_or(i32::MAX),
        ));
    }
    let first = counts.first().map(|(_, c)| *c).unwrap_or(0);
    if first == 0 || counts.iter().any(|(_, c)| *c != first) {
        return Err(RuntimeError::Config(format!(
            "inputs of a stateful processor must exist and be co-partitioned: {counts:?}"
        )));
    }
    Ok(first)
}

/// Creates the compacted changelog topic if it does not exist.
pub async fn ensure_changelog(
    config: &RuntimeConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), RuntimeError> {
    ensure_changelog_at(&config.stack.bootstrap_servers, topic, partitions).await
}

/// [`ensure_changelog`] on the broker at `bootstrap` (benchmarks prepare changelogs too).
pub async fn ensure_changelog_at(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), RuntimeError> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    if metadata
        .topics()
        .first()
        .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
    {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "-1");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(RuntimeError::Config(format!(
                    "creating changelog {name}: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// Outcome of a restore, for metrics and logs.
pub struct Restored<V> {
    pub store: PartitionStore<V>,
    /// Changelog offset the restore started at.
    pub from: i64,
    pub records: u64,
    pub elapsed: Duration,
}

/// Reads changelog `partition` to its end into the store `base` returns. `base` gets the
/// changelog's end offset (to refuse a snapshot that is ahead of the log) and the restore
/// starts at its `changelog_next`; one client serves both. Blocking: run it on a blocking
/// thread.
pub fn restore<V: DeserializeOwned>(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    base: impl FnOnce(i64) -> PartitionStore<V>,
) -> Result<Restored<V>, RuntimeError> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-restore"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
    let base = base(high);
    let from = base.changelog_next.max(low);
    let mut restorer = Restorer::new(base);
    if from < high {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
        consumer.assign(&tpl)?;
        let mut last = from - 1;
        let mut idle = Instant::now();
        while last + 1 < high {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    idle = Instant::now();
                    last = m.offset();
                    restorer.push(parse_record(&m)?, m.offset());
                }
                Some(Err(e)) => return Err(e.into()),
                None if idle.elapsed() > Duration::from_secs(30) => {
                    return Err(RuntimeError::Fatal(format!(
                        "changelog {topic}/{partition} stopped at {last} before its end {high}"
                    )))
                }
                None => {}
            }
        }
    }
    let records = restorer.applied_records;
    Ok(Restored {
        store: restorer.finish(),
        from,
        records,
        elapsed: started.elapsed(),
    })
}

fn parse_record<M: Message, V: DeserializeOwned>(m: &M) -> Result<Decoded<V>, RuntimeError> {
    let key = m
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or_else(|| {
            RuntimeError::Fatal(format!(
                "changelog record {}/{}@{} has no UTF-8 key",
                m.topic(),
                m.partition(),
                m.offset()
            ))
        })?;
    let header = |name: &str| {
        m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == name)
                .and_then(|x| x.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        })
    };
    decode_changelog(key, m.payload(), header).map_err(|source| RuntimeError::Changelog {
        at: format!("{}/{}@{}", m.topic(), m.partition(), m.offset()),
        source,
    })
}
