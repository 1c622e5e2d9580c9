//! The broker alone, measured in the same run as the fleet: a single record's round trip
//! (produce, acknowledged, consumed) and records/s through produce + consume with the
//! fleet's own client settings, on a topic of the run that nothing else reads.

use std::time::{Duration, Instant};

use loadgen::kafka::{drain, produce_all, reader, reader_from_end};
use loadgen::percentile;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::error::check;
use crate::{Error, Result};

pub struct Raw {
    pub rtt_p50: i64,
    pub rtt_p99: i64,
    pub records: usize,
    pub bytes: usize,
    pub produce_per_sec: f64,
    pub consume_per_sec: f64,
}

pub async fn measure(bootstrap: &str, producer: &FutureProducer, topic: &str) -> Result<Raw> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 6, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for result in results {
        result.map_err(|(topic, code)| Error::CreateTopic { topic, code })?;
    }
    let rtt = round_trips(bootstrap, producer, topic, 200).await?;
    // Produce+consume: as many records as a 20,000-checkout burst writes to its busiest
    // topic, ~300 bytes each (a checkout request's size), produced as fast as the producer
    // goes, read by one consumer from the start.
    let records = 50_000;
    let payload = vec![b'x'; 300];
    let batch: Vec<(String, Vec<u8>)> = (0..records)
        .map(|i| (format!("k{i}"), payload.clone()))
        .collect();
    let consumer = reader(bootstrap, topic, &format!("{topic}-throughput"))?;
    let started = Instant::now();
    produce_all(producer, topic, batch).await?;
    let produce_secs = started.elapsed().as_secs_f64();
    let seen = drain(&consumer, records + rtt.len(), Duration::from_secs(20)).await;
    let consume_secs = seen
        .last()
        .map(|s| s.received - started)
        .unwrap_or_default()
        .as_secs_f64();
    Ok(Raw {
        rtt_p50: percentile(&rtt, 0.50),
        rtt_p99: percentile(&rtt, 0.99),
        records,
        bytes: payload.len(),
        produce_per_sec: records as f64 / produce_secs.max(1e-9),
        consume_per_sec: seen.len().saturating_sub(rtt.len()) as f64 / consume_secs.max(1e-9),
    })
}

/// `n` sequential produce → acknowledged → consumed round trips of a small record (ms).
async fn round_trips(
    bootstrap: &str,
    producer: &FutureProducer,
    topic: &str,
    n: usize,
) -> Result<Vec<i64>> {
    let consumer = reader_from_end(bootstrap, topic)?;
    // The reader's assignment must be in place before the first record.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("rtt-{i}");
        let started = Instant::now();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload("x"),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)?;
        loop {
            let seen = drain(&consumer, 1, Duration::from_secs(5)).await;
            check!(!seen.is_empty(), "round trip {i}: nothing read back in 5 s");
            if seen[0].key.as_deref() == Some(key.as_bytes()) {
                break;
            }
        }
        out.push(started.elapsed().as_millis() as i64);
    }
    out.sort_unstable();
    Ok(out)
}
