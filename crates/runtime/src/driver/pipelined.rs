//! The pipelined driver, for [`ConcurrentProcessor`]s: a processor whose handler waits on
//! I/O (a payment gateway) would otherwise hold up every partition of its instance.
//!
//! The driver loop stays the single reader of the consumer. For each record it takes a
//! permit (at most `concurrency` records in flight: the backpressure), links the record
//! behind the previous record with the same key (so per-key order holds: a handler starts
//! only after the previous one of its key finished and handed its outputs to the producer),
//! spawns the handling, and hands the acker a [`Pending::Deferred`] in consumption order.
//! The acker settles records in that order, so an offset is committed only after its record
//! and every earlier one of the partition are acknowledged: a crash redelivers, never loses.
//!
//! A record carrying `sf.not-before` waits in its own task, holding only its permit. A record
//! abandoned by shutdown or a revoke while it waits (or between retries) leaves a hole: no
//! later offset of its partition is committed, so the next owner handles it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codec::{RegistryClient, TopicCodec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use topology::{Topology, ValueFormat};
use tracing::{info, warn};

use super::acker::{Deferred, Pending, Source};
use super::context::{lock, Shared, TrackingContext};
use super::key_chains::KeyChains;
use super::retries::{Attempts, Next};
use super::{
    connect, decode_input, formats, not_before, now_millis, produce, register_codecs, start_admin,
    Admin, Plumbing,
};
use crate::admin::Phase;
use crate::policy::Failure;
use crate::processor::{ConcurrentProcessor, OutRecord, Outputs};
use crate::{kafka, Metrics, RuntimeConfig, RuntimeError};
use tasks::Tasks;

/// Runs `processor` with up to `concurrency` records in flight until `shutdown` or a fatal
/// error. At-least-once only: Kafka transactions cannot span concurrent handlers.
pub async fn run_pipelined<P: ConcurrentProcessor>(
    config: RuntimeConfig,
    topology: &Topology,
    processor: P,
    concurrency: usize,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    if config.guarantee != topology::Guarantee::AtLeastOnce {
        return Err(RuntimeError::Config(format!(
            "`{}` runs pipelined, which supports guarantee at_least_once only",
            config.processor
        )));
    }
    if concurrency == 0 {
        return Err(RuntimeError::Config(
            "concurrency must be at least 1".into(),
        ));
    }
    let admin = start_admin(&config, None).await?;
    info!(processor = %config.processor, instance = config.instance, admin = %admin.addr, concurrency, "admin endpoint up (pipelined)");
    let tasks = admin.tasks.clone();
    let result = run_inner(config, topology, processor, concurrency, shutdown, admin).await;
    tasks.drain(tasks::DRAIN_TIME).await;
    result
}

async fn run_inner<P: ConcurrentProcessor>(
    config: RuntimeConfig,
    topology: &Topology,
    processor: P,
    concurrency: usize,
    shutdown: CancellationToken,
    admin: Admin,
) -> Result<(), RuntimeError> {
    let Admin {
        metrics,
        phase,
        tasks,
        ..
    } = admin;
    let registry = RegistryClient::new(&config.stack.registry_url);
    let Some(codecs) = register_codecs(&config, topology, &registry, &shutdown).await? else {
        return Ok(());
    };
    let producer: FutureProducer = kafka::processor_producer_config(&config).create()?;
    let Plumbing {
        consumer,
        shared,
        pending,
        fatal,
        acker,
    } = connect(&config, &metrics, &producer, None, &tasks)?;
    let work = Arc::new(Work {
        formats: formats(topology),
        codecs: Arc::new(codecs),
        producer,
        metrics,
        processor,
        shutdown: shutdown.clone(),
        shared: shared.clone(),
        config,
    });
    let mut driver = PipelinedDriver {
        work,
        pending,
        permits: Arc::new(Semaphore::new(concurrency)),
        chains: KeyChains::new(concurrency),
        tasks,
    };
    phase.set(Phase::RUNNING);
    let outcome = driver.consume(&consumer, &fatal, &shared).await;
    phase.set(Phase::STOPPING);
    consumer.context().clear_flush();
    drop(driver);
    let acked = acker
        .await
        .unwrap_or_else(|e| Err(RuntimeError::Fatal(format!("acker task failed: {e}"))));
    drop(consumer);
    outcome.and(acked)
}

struct PipelinedDriver<P: ConcurrentProcessor> {
    work: Arc<Work<P>>,
    pending: tokio::sync::mpsc::Sender<Pending>,
    permits: Arc<Semaphore>,
    /// The last in-flight record of each key. Single writer: this driver.
    chains: KeyChains,
    /// The run's tasks: each record is handled in one of them.
    tasks: Tasks,
}

impl<P: ConcurrentProcessor> PipelinedDriver<P> {
    async fn consume(
        &mut self,
        consumer: &StreamConsumer<TrackingContext>,
        fatal: &CancellationToken,
        shared: &Shared,
    ) -> Result<(), RuntimeError> {
        loop {
            let permit = tokio::select! {
                _ = self.work.shutdown.cancelled() => return Ok(()),
                _ = fatal.cancelled() => return Ok(()),
                permit = self.permits.clone().acquire_owned() => permit
                    .map_err(|_| RuntimeError::Fatal("permits closed".into()))?,
            };
            tokio::select! {
                biased;
                _ = self.work.shutdown.cancelled() => return Ok(()),
                _ = fatal.cancelled() => return Ok(()),
                message = consumer.recv() => match message {
                    Ok(m) => self.dispatch(m.detach(), permit).await?,
                    Err(e) => {
                        warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            if let Some(failed) = lock(&shared.failed).take() {
                return Err(RuntimeError::Fatal(failed));
            }
        }
    }

    async fn dispatch(
        &mut self,
        message: OwnedMessage,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), RuntimeError> {
        let work = &self.work;
        work.metrics
            .records_in
            .with_label_values(&[message.topic()])
            .inc();
        work.metrics
            .observe_age(message.topic(), message.timestamp().to_millis());
        work.metrics.in_flight.inc();
        let source = Source {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let (previous, finish) = self.chains.chain(message.key());
        let (outcome_tx, outcome) = oneshot::channel();
        let work = work.clone();
        // Owner: the run's tasks. It ends by itself (shutdown abandons a waiting record) and
        // the acker awaits its outcome. One the acker no longer waits for (it stopped on a
        // fatal error) is cut at the run's drain: its offset was not committed.
        let stop = self.tasks.token().clone();
        self.tasks.spawn("pipelined record", async move {
            let handled = async move {
                if let Some(previous) = previous {
                    previous.await;
                }
                let outcome = work.handle(&message).await;
                finish.finished();
                let _ = outcome_tx.send(outcome);
                drop(permit);
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = handled => {}
            }
        });
        self.pending
            .send(Pending::Deferred { source, outcome })
            .await
            .map_err(|_| RuntimeError::Fatal("acker stopped".into()))
    }
}

/// Everything a record's task needs; shared read-only by all tasks.
struct Work<P: ConcurrentProcessor> {
    config: RuntimeConfig,
    formats: HashMap<String, ValueFormat>,
    codecs: Arc<HashMap<String, TopicCodec>>,
    producer: FutureProducer,
    metrics: Metrics,
    processor: P,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
}

impl<P: ConcurrentProcessor> Work<P> {
    /// Waits out `sf.not-before`, handles with retries as the policy says (dead-lettering
    /// what it gives up on), and hands the outputs to the producer.
    async fn handle(&self, message: &OwnedMessage) -> Deferred {
        if let Some(at) = not_before(message) {
            if !self.wait_until(message, at).await {
                return Deferred::Abandoned;
            }
        }
        let started = Instant::now();
        let mut attempts = Attempts::new(message);
        let records = loop {
            let failure = match self.try_handle(message).await {
                Ok(records) => break records,
                Err(failure) => failure,
            };
            match attempts.failed(failure, &self.config, &self.codecs, &self.metrics) {
                Ok(Next::Retry(delay)) => {
                    let until = now_millis()
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    if !self.wait_until(message, until).await {
                        return Deferred::Abandoned;
                    }
                }
                Ok(Next::DeadLetter(record)) => break vec![record],
                Err(e) => return Deferred::Failed(e),
            }
        };
        self.metrics
            .processing_seconds
            .with_label_values(&[message.topic()])
            .observe(started.elapsed().as_secs_f64());
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            match produce(&self.producer, &record).await {
                Ok(delivery) => deliveries.push((record.topic, delivery)),
                Err(e) => return Deferred::Failed(e),
            }
        }
        Deferred::Done(deliveries)
    }

    async fn try_handle(&self, message: &OwnedMessage) -> Result<Vec<OutRecord>, Failure> {
        let input = decode_input(&self.formats, &self.codecs, message).await?;
        let mut outputs = Outputs::new(&self.codecs);
        self.processor
            .handle(&input, &mut outputs)
            .await
            .map_err(Failure::Handler)?;
        Ok(outputs.into_records())
    }

    /// Sleeps until `at` (ms since the epoch); false if shutdown or a revoke of the record's
    /// partition came first.
    async fn wait_until(&self, message: &OwnedMessage, at: i64) -> bool {
        loop {
            let left = at.saturating_sub(now_millis());
            if left <= 0 {
                return true;
            }
            if self
                .shared
                .is_revoking(message.topic(), message.partition())
            {
                return false;
            }
            let step = Duration::from_millis(u64::try_from(left.min(100)).unwrap_or(100));
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(step) => {}
            }
        }
    }
}
