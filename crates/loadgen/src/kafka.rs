//! Producing a workload and draining a topic, for demos, benches and tests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::{Error, Result};

fn step(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    move |source| Error::KafkaStep { what, source }
}

pub fn producer(bootstrap: &str) -> Result<FutureProducer> {
    runtime::producer_config(bootstrap, "loadgen")
        .set("linger.ms", "5")
        .create()
        .map_err(step("creating producer"))
}

/// Sends (key, payload) pairs without waiting per record; returns once all are acknowledged.
pub async fn produce_all<I>(producer: &FutureProducer, topic: &str, records: I) -> Result<usize>
where
    I: IntoIterator<Item = (String, Vec<u8>)>,
{
    let mut deliveries = futures::stream::FuturesUnordered::new();
    let mut count = 0;
    for (key, payload) in records {
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                Err((e, _)) => {
                    if deliveries.is_empty() {
                        return Err(Error::Produce {
                            topic: topic.to_string(),
                            source: e,
                        });
                    }
                    // Queue full: make room by awaiting some deliveries.
                    if let Some(result) = deliveries.next().await {
                        result
                            .map_err(Error::DeliveryCanceled)?
                            .map_err(|(e, _)| e)?;
                    }
                }
            }
        }
        count += 1;
    }
    while let Some(result) = deliveries.next().await {
        result
            .map_err(Error::DeliveryCanceled)?
            .map_err(|(e, _)| e)?;
    }
    Ok(count)
}

/// One consumed record, as tests and reports need it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
    pub timestamp_ms: Option<i64>,
    pub received: Instant,
}

/// A consumer of `topic` from the beginning, in a fresh group of its own.
pub fn reader(bootstrap: &str, topic: &str, group: &str) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .set("session.timeout.ms", "10000")
        .create()
        .map_err(step("creating reader"))?;
    consumer.subscribe(&[topic]).map_err(step("subscribing"))?;
    Ok(consumer)
}

/// Reads until `want` records arrived or nothing new came for `idle`.
pub async fn drain(consumer: &StreamConsumer, want: usize, idle: Duration) -> Vec<Seen> {
    let mut seen = Vec::with_capacity(want.min(65_536));
    while seen.len() < want {
        match tokio::time::timeout(idle, consumer.recv()).await {
            Ok(Ok(m)) => seen.push(Seen {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp_ms: m.timestamp().to_millis(),
                received: Instant::now(),
            }),
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => break,
        }
    }
    seen
}

/// A consumer assigned to every partition of `topic` at its current end: it sees only what
/// is written from now on (a run's own records, whatever the topic held before).
pub fn reader_from_end(bootstrap: &str, topic: &str) -> Result<StreamConsumer> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(step("creating reader"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(step("topic metadata"))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map_err(step("watermarks"))?;
            assignment.add_partition_offset(topic, p.id(), Offset::Offset(high))?;
        }
    }
    consumer.assign(&assignment).map_err(step("assigning"))?;
    Ok(consumer)
}
