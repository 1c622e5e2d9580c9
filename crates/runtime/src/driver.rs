//! The consume → process → produce → commit loop.
//!
//! Two tasks share the work. The *driver* (this module's `Driver`) is the single reader of
//! the consumer and the single caller of the processor: records are handled strictly one at
//! a time, in the order the consumer returns them, which keeps per-partition (so per-key)
//! order. Its outputs are handed to the producer without waiting, and the record's delivery
//! futures go, in order, to the *acker* (`acker.rs`), which is the single writer of the
//! "acknowledged offsets" map and the only committer. An offset enters that map only after
//! every delivery of its record succeeded, and offsets of one partition arrive in order, so
//! a commit never covers an unacknowledged output. The bounded channel between them is the
//! backpressure: at most `max_in_flight` records await acknowledgement.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use codec::{RegistryClient, TopicCodec, Value};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use topology::{Topology, ValueFormat};
use tracing::{error, info, warn};

use crate::admin::{serve_admin, Phase};
use crate::dead_letter::DeadLetter;
use crate::policy::{decide, Action, Failure};
use crate::processor::{Input, OutRecord, Outputs};
use crate::{kafka, Metrics, Processor, RuntimeConfig, RuntimeError};

mod acker;
mod context;

use acker::{Acker, Pending};
use context::TrackingContext;

/// Runs `processor` until `shutdown` is cancelled (graceful: in-flight outputs acknowledged,
/// offsets committed, group left) or a fatal error.
pub async fn run<P: Processor>(
    config: RuntimeConfig,
    topology: &Topology,
    processor: P,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let metrics = Metrics::new(&config.processor, config.instance);
    let phase = Phase::default();
    let admin_stop = CancellationToken::new();
    let admin = serve_admin(
        config.admin_addr,
        format!("{}-{}", config.processor, config.instance),
        metrics.clone(),
        phase.clone(),
        admin_stop.clone(),
    )
    .await?;
    info!(processor = %config.processor, instance = config.instance, %admin, "admin endpoint up");

    let result = run_inner(config, topology, processor, shutdown, metrics, phase).await;
    admin_stop.cancel();
    result
}

async fn run_inner<P: Processor>(
    config: RuntimeConfig,
    topology: &Topology,
    processor: P,
    shutdown: CancellationToken,
    metrics: Metrics,
    phase: Phase,
) -> Result<(), RuntimeError> {
    let registry = RegistryClient::new(&config.stack.registry_url);
    let Some(codecs) = register_codecs(&config, topology, &registry, &shutdown).await? else {
        return Ok(());
    };

    let producer: FutureProducer = kafka::producer_config(
        &config.stack.bootstrap_servers,
        &format!("{}-{}", config.processor, config.instance),
    )
    .create()?;
    let consumer: Arc<StreamConsumer<TrackingContext>> = Arc::new(
        kafka::consumer_config(&config)
            .create_with_context(TrackingContext::new(metrics.clone()))?,
    );
    let topics: Vec<String> = config.inputs.iter().map(|i| i.topic.clone()).collect();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;

    let (pending_tx, pending_rx) = mpsc::channel(config.max_in_flight.max(1));
    let fatal = CancellationToken::new();
    let acker = Acker::new(
        consumer.clone(),
        metrics.clone(),
        config.commit_interval,
        fatal.clone(),
    );
    let acker_task = tokio::spawn(acker.run(pending_rx));

    let mut driver = Driver {
        formats: topology
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.value))
            .collect(),
        config,
        codecs,
        producer,
        metrics,
        processor,
        pending: pending_tx,
        shutdown: shutdown.clone(),
    };
    phase.set(Phase::RUNNING);
    info!(processor = %driver.config.processor, ?topics, "consuming");
    let outcome = driver.consume(&consumer, &fatal).await;
    phase.set(Phase::STOPPING);

    // Drain: closing the channel lets the acker await the last deliveries and commit.
    drop(driver.pending);
    let acked = acker_task
        .await
        .unwrap_or_else(|e| Err(RuntimeError::Fatal(format!("acker task failed: {e}"))));
    // Dropping the consumer closes it, which leaves the group so partitions move at once.
    drop(consumer);
    outcome.and(acked)
}

/// Registers every Avro schema this processor reads or writes (idempotent in the registry),
/// waiting out a registry that is still starting. `None` if shut down meanwhile.
async fn register_codecs(
    config: &RuntimeConfig,
    topology: &Topology,
    registry: &RegistryClient,
    shutdown: &CancellationToken,
) -> Result<Option<HashMap<String, TopicCodec>>, RuntimeError> {
    let mut names: Vec<&str> = config.outputs.iter().map(String::as_str).collect();
    for input in &config.inputs {
        names.push(&input.topic);
        names.push(&input.dead_letter);
    }
    let mut codecs = HashMap::new();
    for name in names {
        let Some(spec) = topology.topic(name) else {
            return Err(RuntimeError::Config(format!(
                "topic `{name}` is not in the topology"
            )));
        };
        let Some(text) = spec
            .value_schema
            .as_deref()
            .and_then(|p| topology.schema_text(p))
        else {
            continue;
        };
        let subject = format!("{name}-value");
        let mut attempt: u32 = 0;
        let codec = loop {
            attempt += 1;
            match TopicCodec::register(registry, &subject, text).await {
                Ok(codec) => break codec,
                Err(e) if e.is_transient() => {
                    warn!(%subject, attempt, error = %e, "schema registry not reachable yet");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt.min(8)))) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        codecs.insert(name.to_string(), codec);
    }
    Ok(Some(codecs))
}

struct Driver<P> {
    config: RuntimeConfig,
    formats: HashMap<String, ValueFormat>,
    codecs: HashMap<String, TopicCodec>,
    producer: FutureProducer,
    metrics: Metrics,
    processor: P,
    pending: mpsc::Sender<Pending>,
    shutdown: CancellationToken,
}

enum Handled {
    Outputs(Vec<OutRecord>),
    /// Shutdown arrived while the record waited to be retried: leave it uncommitted.
    Abandoned,
}

impl<P: Processor> Driver<P> {
    async fn consume(
        &mut self,
        consumer: &StreamConsumer<TrackingContext>,
        fatal: &CancellationToken,
    ) -> Result<(), RuntimeError> {
        loop {
            let message = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = fatal.cancelled() => return Ok(()),
                message = consumer.recv() => message,
            };
            match message {
                Ok(m) => self.on_message(m.detach()).await?,
                Err(e) => {
                    warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn on_message(&mut self, message: OwnedMessage) -> Result<(), RuntimeError> {
        let topic = message.topic().to_string();
        self.metrics.records_in.with_label_values(&[&topic]).inc();
        let started = Instant::now();
        let records = match self.handle_with_retries(&message).await? {
            Handled::Outputs(records) => records,
            Handled::Abandoned => return Ok(()),
        };
        self.metrics
            .processing_seconds
            .with_label_values(&[&topic])
            .observe(started.elapsed().as_secs_f64());
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            deliveries.push((record.topic.clone(), self.produce(record).await?));
        }
        let pending = Pending {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            deliveries,
        };
        self.metrics.in_flight.inc();
        self.pending
            .send(pending)
            .await
            .map_err(|_| RuntimeError::Fatal("acker stopped".into()))
    }

    /// Decodes and handles one record, retrying as the policy says; a record the policy
    /// gives up on becomes a dead-letter output instead.
    async fn handle_with_retries(
        &mut self,
        message: &OwnedMessage,
    ) -> Result<Handled, RuntimeError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let failure = match self.try_handle(message).await {
                Ok(records) => return Ok(Handled::Outputs(records)),
                Err(failure) => failure,
            };
            self.metrics
                .failures
                .with_label_values(&[failure.kind()])
                .inc();
            match decide(&failure, attempt, &self.config.retry) {
                Action::Retry(delay) => {
                    self.metrics
                        .retries
                        .with_label_values(&[failure.kind()])
                        .inc();
                    warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), attempt, ?delay, error = %failure, "retrying record");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(Handled::Abandoned),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Action::DeadLetter(kind) => {
                    warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error_kind = kind.as_str(), error = %failure, "dead-lettering record");
                    let letter = self.dead_letter(message, kind, &failure, attempt);
                    return Ok(Handled::Outputs(vec![
                        self.dead_letter_record(message.topic(), letter)?
                    ]));
                }
                Action::Stop => {
                    error!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error = %failure, "stopping processor");
                    return Err(RuntimeError::Fatal(failure.to_string()));
                }
            }
        }
    }

    async fn try_handle(&mut self, message: &OwnedMessage) -> Result<Vec<OutRecord>, Failure> {
        let topic = message.topic();
        let value = match (message.payload(), self.formats.get(topic)) {
            (None, _) => None,
            (Some(bytes), Some(ValueFormat::Avro)) => {
                let codec = self.codecs.get(topic).ok_or_else(|| {
                    Failure::Decode(codec::CodecError::Registry(format!(
                        "no codec for `{topic}`"
                    )))
                })?;
                Some(codec.decode(bytes).await.map_err(Failure::Decode)?)
            }
            (Some(bytes), _) => Some(Value::Bytes(bytes.to_vec())),
        };
        let input = Input {
            topic: topic.to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value,
            timestamp_ms: message.timestamp().to_millis(),
        };
        let mut outputs = Outputs::new(&self.codecs);
        self.processor
            .handle(&input, &mut outputs)
            .await
            .map_err(Failure::Handler)?;
        Ok(outputs.into_records())
    }

    fn dead_letter(
        &self,
        message: &OwnedMessage,
        kind: crate::DeadLetterErrorKind,
        failure: &Failure,
        attempts: u32,
    ) -> DeadLetter {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| crate::DeadLetterHeader {
                        key: header.key.to_string(),
                        value: header.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let schema_id = message
            .payload()
            .and_then(|p| codec::unframe(p).ok())
            .and_then(|(id, _)| i32::try_from(id).ok());
        DeadLetter {
            original_key: message.key().map(<[u8]>::to_vec),
            original_value: message.payload().map(<[u8]>::to_vec),
            source_topic: message.topic().to_string(),
            source_partition: message.partition(),
            source_offset: message.offset(),
            original_timestamp: message.timestamp().to_millis(),
            original_schema_id: schema_id,
            processor: self.config.processor.clone(),
            consumer_group: self.config.group.clone(),
            error_kind: kind,
            reason: failure.to_string(),
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            failed_at: now_millis(),
            headers,
        }
    }

    fn dead_letter_record(
        &self,
        source: &str,
        letter: DeadLetter,
    ) -> Result<OutRecord, RuntimeError> {
        let topic = self
            .config
            .dead_letter_for(source)
            .ok_or_else(|| RuntimeError::Config(format!("no dead-letter topic for `{source}`")))?;
        let codec = self.codecs.get(topic).ok_or_else(|| {
            RuntimeError::Config(format!("dead-letter topic `{topic}` has no Avro codec"))
        })?;
        let payload = codec.encode(&letter)?;
        self.metrics
            .dead_lettered
            .with_label_values(&[topic, letter.error_kind.as_str()])
            .inc();
        Ok(OutRecord {
            topic: topic.to_string(),
            key: letter.original_key.clone(),
            payload: Some(payload),
            headers: letter
                .headers()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }

    /// Hands one record to the producer; waits only while its queue is full.
    async fn produce(
        &self,
        record: OutRecord,
    ) -> Result<rdkafka::producer::DeliveryFuture, RuntimeError> {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        loop {
            let mut future = FutureRecord::to(&record.topic).headers(headers.clone());
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            if let Some(payload) = &record.payload {
                future = future.payload(payload);
            }
            match self.producer.send_result(future) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
