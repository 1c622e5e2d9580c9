//! `fleet dlq redrive`: re-produce dead letters' original bytes, deferred, and log it.
//!
//! Order of effects, per dead letter: the redriven record is produced (idempotent producer,
//! acks=all) and acknowledged, and only then is its redrive-log record written. A crash in
//! between leaves a redriven record without a log entry, so a later redrive may send it
//! again (a duplicate, which processors handle idempotently); no dead letter is ever logged
//! as redriven without having been.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use runtime::{DeadLetter, StackEnv};
use topology::Topology;

use crate::decode::Decoder;
use crate::error::chain;
use crate::inspect::read_one;
use crate::plan::{self, PlannedRedrive, Target};
use crate::redrive_log::{self, RedriveEntry};
use crate::render::{self, Summary};
use crate::request::{check_targets, RedriveRequest};
use crate::{kafka, Coordinates, Error};

pub async fn run(
    request: RedriveRequest,
    env: &StackEnv,
    topology: &Topology,
) -> crate::Result<()> {
    let bootstrap = &env.bootstrap_servers;
    let topic = &request.dlq_topic;
    let records = read_letters(&request, env, topology).await?;
    let history = kafka::read_history(bootstrap).await?;
    let plan = plan::plan(records, &request.selection, request.to.as_deref(), &history);
    if let (Target::One { .. }, Some((at, reason))) =
        (request.selection.target, plan.undecodable.first())
    {
        return Err(Error::NotADeadLetter {
            at: at.clone(),
            reason: reason.clone(),
        });
    }
    check_targets(&plan, topology)?;

    let mut summary = Summary {
        dlq_topic: topic.clone(),
        dry_run: request.dry_run,
        selected: plan.selected(),
        already_redriven: plan.already_redriven.len(),
        undecodable: plan.undecodable.len(),
        ..Summary::default()
    };
    let now = runtime::now_ms();
    let mut rng = rand::rng();
    let deferred: Vec<(PlannedRedrive, i64)> = plan
        .redrives
        .into_iter()
        .map(|r| {
            let delay = request.deferral.delay_ms(r.n, &mut rng);
            let not_before = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
            (r, not_before)
        })
        .collect();
    if request.dry_run {
        for (r, not_before) in &deferred {
            println!(
                "{}",
                render::redrive_line(&r.at, &r.to, r.n, *not_before, now, true)
            );
        }
        summary.redriven = deferred.len();
        for (r, _) in &deferred {
            *summary.targets.entry(r.to.clone()).or_default() += 1;
        }
        println!("{}", render::summary(&summary));
        return Ok(());
    }
    if !deferred.is_empty() {
        kafka::ensure_log_topic(bootstrap, topology).await?;
        let producer = kafka::producer(bootstrap)?;
        produce_all(&producer, &deferred, now, &mut summary).await;
    }
    println!("{}", render::summary(&summary));
    if summary.failed > 0 {
        return Err(Error::RedrivesFailed {
            failed: summary.failed,
            total: deferred.len(),
        });
    }
    Ok(())
}

/// The records the request targets, each decoded as a dead letter or with why it is not one.
async fn read_letters(
    request: &RedriveRequest,
    env: &StackEnv,
    topology: &Topology,
) -> crate::Result<Vec<(Coordinates, Result<DeadLetter, String>)>> {
    let topic = &request.dlq_topic;
    let raw = match request.selection.target {
        Target::One { partition, offset } => {
            vec![read_one(env, &Coordinates::new(topic, partition, offset)).await?]
        }
        Target::All => {
            let marks = kafka::topic_watermarks(&env.bootstrap_servers, topic).await?;
            let ranges = marks.iter().map(kafka::Watermarks::everything).collect();
            kafka::read(&env.bootstrap_servers, topic, ranges).await?
        }
    };
    let decoder = Decoder::new(&env.registry_url, topology.value_schema(topic));
    let mut records = Vec::with_capacity(raw.len());
    for record in raw {
        let at = Coordinates::new(topic, record.partition, record.offset);
        records.push((at, decoder.dead_letter(record.value.as_deref()).await?));
    }
    Ok(records)
}

/// Produces every redrive in order, then, as each is acknowledged, its log record.
async fn produce_all(
    producer: &FutureProducer,
    deferred: &[(PlannedRedrive, i64)],
    now: i64,
    summary: &mut Summary,
) {
    let mut deliveries = Vec::with_capacity(deferred.len());
    for (r, not_before) in deferred {
        let headers = plan::redrive_headers(&r.letter.headers, &r.at, *not_before);
        let record = with_bytes(
            FutureRecord::to(&r.to).headers(owned_headers(&headers)),
            r.letter.original_key.as_deref(),
            r.letter.original_value.as_deref(),
        );
        deliveries.push(enqueue(producer, record).await);
    }
    let mut logged = Vec::with_capacity(deferred.len());
    for ((r, not_before), delivery) in deferred.iter().zip(deliveries) {
        if let Err(error) = acknowledged(delivery).await {
            summary.failed += 1;
            eprintln!("failed to redrive {} to {}: {}", r.at, r.to, chain(&error));
            continue;
        }
        summary.redriven += 1;
        *summary.targets.entry(r.to.clone()).or_default() += 1;
        println!(
            "{}",
            render::redrive_line(&r.at, &r.to, r.n, *not_before, now, false)
        );
        let entry = RedriveEntry {
            redriven_at: runtime::now_ms(),
            to: r.to.clone(),
            not_before: *not_before,
            count: r.n.saturating_add(1),
        };
        let key = r.at.to_string();
        let value = entry.to_json();
        let record = FutureRecord::to(redrive_log::TOPIC)
            .key(key.as_bytes())
            .payload(value.as_slice());
        logged.push((r.at.clone(), enqueue(producer, record).await));
    }
    for (at, delivery) in logged {
        if let Err(error) = acknowledged(delivery).await {
            eprintln!(
                "redrove {at} but could not log it to {}: {}; a later redrive will not know",
                redrive_log::TOPIC,
                chain(&error)
            );
        }
    }
}

fn with_bytes<'a>(
    record: FutureRecord<'a, [u8], [u8]>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> FutureRecord<'a, [u8], [u8]> {
    let record = match key {
        Some(key) => record.key(key),
        None => record,
    };
    match value {
        Some(value) => record.payload(value),
        None => record,
    }
}

fn owned_headers(headers: &[(String, Option<Vec<u8>>)]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new(), |out, (key, value)| {
            out.insert(Header {
                key,
                value: value.as_ref(),
            })
        })
}

/// Hands a record to librdkafka, waiting while its queue is full.
async fn enqueue(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> crate::Result<DeliveryFuture> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((error, _)) => return Err(error.into()),
        }
    }
}

async fn acknowledged(delivery: crate::Result<DeliveryFuture>) -> crate::Result<()> {
    match delivery?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error.into()),
        Err(_) => Err(Error::ProducerDropped),
    }
}
