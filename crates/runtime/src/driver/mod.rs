//! The consume → process → produce → commit loop.
//!
//! The *driver* (`Driver`) is the single reader of the consumer, the single caller of the
//! processor and the single writer of the state stores: records are handled strictly one at
//! a time, in the order the consumer returns them, which keeps per-partition (so per-key)
//! order. Its outputs go to the producer without waiting; the record's delivery futures and
//! its changelog batch go, in order, through a bounded channel (the backpressure) to the
//! acker and committer (`acker.rs`), which write state only after outputs are acknowledged
//! and commit offsets only after both.
//!
//! Stateful processors: before a partition's first record (and after every rebalance that
//! assigns it) its store is verified against the changelog's end and caught up from a local
//! snapshot or from memory plus the changelog tail; a record whose offset the store has
//! already applied is skipped (its outputs were acknowledged before its state was written).
//! Due timers fire between records, on the driver, for owned partitions only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codec::{RegistryClient, TopicCodec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tasks::Tasks;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use topology::{Topology, ValueFormat};
use tracing::{info, warn};

use crate::admin::{serve_admin, Phase, StateQuery};
pub(crate) use crate::clock::now_ms as now_millis;
use crate::dead_letter::DeadLetter;
use crate::policy::Failure;
use crate::processor::{Input, OutRecord, StatefulProcessor, Stateless};
use crate::state::{self, PartitionStore};
use crate::{kafka, step, Metrics, Processor, RuntimeConfig, RuntimeError};

mod acker;
mod context;
mod key_chains;
mod pipelined;
mod retries;
pub(crate) mod state_io;
mod txn;

use acker::{Acker, Committer, Pending, Source};
use context::{lock, Shared, TrackingContext};
pub use pipelined::run_pipelined;
use retries::{Attempts, Next};
use txn::Txn;

/// Runs a stateless `processor` until `shutdown` is cancelled (graceful: in-flight outputs
/// acknowledged, offsets committed, group left) or a fatal error.
pub async fn run<P: Processor>(
    config: RuntimeConfig,
    topology: &Topology,
    processor: P,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    run_stateful(config, topology, Stateless(processor), shutdown).await
}

/// Runs a stateful `processor` (see [`StatefulProcessor`]) until `shutdown` or a fatal error.
pub async fn run_stateful<P: StatefulProcessor>(
    config: RuntimeConfig,
    topology: &Topology,
    processor: P,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let (query_tx, query_rx) = mpsc::channel(64);
    let admin = start_admin(&config, (!P::STORE.is_empty()).then_some(query_tx)).await?;
    info!(processor = %config.processor, instance = config.instance, admin = %admin.addr, "admin endpoint up");
    let tasks = admin.tasks.clone();
    let result = run_inner(config, topology, processor, shutdown, admin, query_rx).await;
    tasks.drain(tasks::DRAIN_TIME).await;
    result
}

/// What a run shares with its admin endpoint, and the tasks the run owns (the admin server,
/// the acker, the pipelined driver's record tasks), drained before the run returns.
pub(crate) struct Admin {
    pub addr: std::net::SocketAddr,
    pub metrics: Metrics,
    pub phase: Phase,
    pub tasks: Tasks,
}

/// Starts the admin endpoint of a run. Its tasks do not watch the caller's token: the
/// endpoint answers (`stopping`) until the run has drained.
pub(crate) async fn start_admin(
    config: &RuntimeConfig,
    queries: Option<mpsc::Sender<StateQuery>>,
) -> Result<Admin, RuntimeError> {
    let metrics = Metrics::new(&config.processor, config.instance);
    let phase = Phase::default();
    let tasks = Tasks::new(CancellationToken::new());
    let addr = serve_admin(
        config.admin_addr,
        format!("{}-{}", config.processor, config.instance),
        metrics.clone(),
        phase.clone(),
        queries,
        &tasks,
    )
    .await?;
    Ok(Admin {
        addr,
        metrics,
        phase,
        tasks,
    })
}

async fn run_inner<P: StatefulProcessor>(
    config: RuntimeConfig,
    topology: &Topology,
    processor: P,
    shutdown: CancellationToken,
    admin: Admin,
    queries: mpsc::Receiver<StateQuery>,
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
    let changelog = if P::STORE.is_empty() {
        None
    } else {
        let topic = state_io::changelog_topic(&config, P::STORE);
        let partitions = state_io::input_partitions(&config)?;
        state_io::ensure_changelog(&config, &topic, partitions).await?;
        Some(topic)
    };

    let producer: FutureProducer = kafka::processor_producer_config(&config).create()?;
    let txn = match config.guarantee {
        topology::Guarantee::ExactlyOnce => {
            let p = producer.clone();
            let txn = tokio::task::spawn_blocking(move || Txn::init(p))
                .await
                .map_err(|e| RuntimeError::Fatal(e.to_string()))??;
            Some(Arc::new(txn))
        }
        topology::Guarantee::AtLeastOnce => None,
    };
    let Plumbing {
        consumer,
        shared,
        pending: pending_tx,
        fatal,
        acker: acker_task,
    } = connect(&config, &metrics, &producer, txn.as_ref(), &tasks)?;
    let topics: Vec<String> = config.inputs.iter().map(|i| i.topic.clone()).collect();

    let mut driver = Driver {
        formats: formats(topology),
        config,
        codecs: Arc::new(codecs),
        producer,
        metrics,
        processor,
        pending: pending_tx,
        shutdown: shutdown.clone(),
        changelog,
        stores: HashMap::new(),
        unflushed: HashMap::new(),
        snapshots: HashMap::new(),
        generation: format!("{:x}", now_millis()),
        batches: 0,
        shared,
        txn,
    };
    phase.set(Phase::RUNNING);
    info!(processor = %driver.config.processor, ?topics, "consuming");
    let mut outcome = driver.consume(&consumer, &fatal, queries).await;
    phase.set(Phase::STOPPING);
    if outcome.is_ok() && driver.txn.is_none() {
        // A clean stop writes what is unflushed, so the final commit covers every record.
        outcome = driver.flush_all().await;
    }
    if let Some(txn) = &driver.txn {
        outcome = match outcome {
            Ok(()) => commit_blocking(txn, &consumer),
            Err(e) => {
                txn.abort();
                Err(e)
            }
        };
    }

    // Drain: closing the channel lets the acker and committer finish and commit.
    consumer.context().clear_flush();
    let Driver {
        pending,
        stores,
        shared,
        config,
        changelog,
        ..
    } = driver;
    drop(pending);
    let acked = acker_task
        .await
        .unwrap_or_else(|e| Err(RuntimeError::Fatal(format!("acker task failed: {e}"))));
    if acked.is_ok() && changelog.is_some() {
        write_snapshots::<P>(&config, &stores, &shared);
    }
    // Dropping the consumer closes it, which leaves the group so partitions move at once.
    drop(consumer);
    outcome.and(acked)
}

/// What both drivers share: the group consumer (tracking ownership and flushing before a
/// revoke), the hand-off channel, and the acker and committer behind it.
pub(crate) struct Plumbing {
    pub consumer: Arc<StreamConsumer<TrackingContext>>,
    pub shared: Arc<Shared>,
    pub pending: mpsc::Sender<Pending>,
    /// Cancelled by the acker or committer when they cannot go on.
    pub fatal: CancellationToken,
    pub acker: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

/// Creates the consumer, subscribes it to the inputs, and starts the acker and committer
/// (on `tasks`; the driver owns the acker's handle and awaits it when the channel closes).
pub(crate) fn connect(
    config: &RuntimeConfig,
    metrics: &Metrics,
    producer: &FutureProducer,
    txn: Option<&Arc<Txn>>,
    tasks: &Tasks,
) -> Result<Plumbing, RuntimeError> {
    let shared = Arc::new(Shared::default());
    let consumer: Arc<StreamConsumer<TrackingContext>> = Arc::new(
        kafka::consumer_config(config)
            .create_with_context(TrackingContext::new(metrics.clone(), shared.clone()))?,
    );
    let (pending, pending_rx) = mpsc::channel(config.max_in_flight.max(1));
    consumer
        .context()
        .set_flush(pending.clone(), tokio::runtime::Handle::current());
    if let Some(txn) = txn {
        let _ = consumer.context().txn.set(txn.clone());
    }
    let topics: Vec<&str> = config.inputs.iter().map(|i| i.topic.as_str()).collect();
    consumer.subscribe(&topics)?;
    let fatal = CancellationToken::new();
    let acker = Acker {
        producer: producer.clone(),
        metrics: metrics.clone(),
        fatal: fatal.clone(),
    };
    let committer = Committer {
        consumer: consumer.clone(),
        metrics: metrics.clone(),
        interval: config.commit_interval,
        fatal: fatal.clone(),
        shared: shared.clone(),
        done: HashMap::new(),
        waiting: HashMap::new(),
    };
    let acker = tasks.spawn("acker", acker.run(pending_rx, committer));
    Ok(Plumbing {
        consumer,
        shared,
        pending,
        fatal,
        acker,
    })
}

/// The value format of every topic, by name.
pub(crate) fn formats(topology: &Topology) -> HashMap<String, ValueFormat> {
    topology
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.value))
        .collect()
}

/// Commits the open transaction (blocking librdkafka calls, off the async workers' path).
fn commit_blocking(
    txn: &Txn,
    consumer: &StreamConsumer<TrackingContext>,
) -> Result<(), RuntimeError> {
    let group = consumer.group_metadata();
    tokio::task::block_in_place(|| txn.commit(group))
}

/// After a clean drain every owned store equals its changelog up to the acknowledged end:
/// snapshot them so a restart restores only what comes after.
fn write_snapshots<P: StatefulProcessor>(
    config: &RuntimeConfig,
    stores: &HashMap<i32, PartitionStore<P::Value>>,
    shared: &Shared,
) {
    for (partition, store) in stores {
        if lock(&shared.stale).contains(partition) {
            continue;
        }
        let mut store = store.clone();
        if let Some(end) = shared.changelog_end(*partition) {
            store.changelog_next = store.changelog_next.max(end);
        }
        let path = state_io::snapshot_path(config, P::STORE, *partition);
        match state::write_snapshot(&path, &store) {
            Ok(()) => {
                info!(partition, keys = store.len(), path = %path.display(), "snapshot written")
            }
            Err(e) => warn!(partition, error = %e, "snapshot not written"),
        }
    }
}

/// Registers every Avro schema this processor reads or writes (idempotent in the registry),
/// waiting out a registry that is still starting. `None` if shut down meanwhile.
pub(crate) async fn register_codecs(
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

/// Timers fired per timer tick at most (see `fire_due_timers`).
const TIMERS_PER_TICK: usize = 256;

struct Driver<P: StatefulProcessor> {
    config: RuntimeConfig,
    formats: HashMap<String, ValueFormat>,
    codecs: Arc<HashMap<String, TopicCodec>>,
    producer: FutureProducer,
    metrics: Metrics,
    processor: P,
    pending: mpsc::Sender<Pending>,
    shutdown: CancellationToken,
    /// The changelog topic; `None` for a stateless processor.
    changelog: Option<String>,
    /// Stores by input partition. Single writer: this driver.
    stores: HashMap<i32, PartitionStore<P::Value>>,
    /// Per store partition, what changed since its last changelog batch.
    unflushed: HashMap<i32, Unflushed>,
    /// Per store partition, when its last snapshot was taken and changes since.
    snapshots: HashMap<i32, (Instant, u64)>,
    /// This driver's id in batch ids (`<generation>:<n>`), unique per process start.
    generation: String,
    batches: u64,
    shared: Arc<Shared>,
    /// Exactly-once mode's transaction; `None` in at-least-once mode.
    txn: Option<Arc<Txn>>,
}

/// What a store partition changed since its last changelog batch.
#[derive(Default)]
struct Unflushed {
    dirty: std::collections::BTreeSet<String>,
    /// An input offset was applied (the batch must carry the new applied offsets even if no
    /// key changed: a dead-lettered record, say).
    applied_moved: bool,
}

/// Keys changed before a store partition's batch is written regardless of the interval.
const FLUSH_KEYS: usize = 5_000;

/// The outcome of handling one record.
enum Handled {
    Done {
        outputs: Vec<OutRecord>,
        effects: Vec<crate::processor::Effect>,
    },
    /// Shutdown arrived while the record waited to be retried: leave it uncommitted.
    Abandoned,
}

impl<P: StatefulProcessor> Driver<P> {
    async fn consume(
        &mut self,
        consumer: &StreamConsumer<TrackingContext>,
        fatal: &CancellationToken,
        mut queries: mpsc::Receiver<StateQuery>,
    ) -> Result<(), RuntimeError> {
        let mut timers = tokio::time::interval(self.config.timer_interval);
        timers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flushes = tokio::time::interval(
            self.config
                .state_flush_interval
                .max(Duration::from_millis(1)),
        );
        flushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Shutdown first: a record abandoned mid-retry must be the last one handled, or a
            // later offset of its partition could be committed past it. (Not a biased select:
            // that would let an always-ready timer tick starve the consumer after a restart
            // with many overdue timers.)
            if self.shutdown.is_cancelled() || fatal.is_cancelled() {
                return Ok(());
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = fatal.cancelled() => return Ok(()),
                Some(query) = queries.recv() => self.answer(query),
                _ = timers.tick(), if self.changelog.is_some() || self.txn.is_some() => {
                    if self.changelog.is_some() {
                        self.fire_due_timers().await?;
                    }
                }
                _ = flushes.tick(), if !self.unflushed.is_empty() => self.flush_all().await?,
                message = consumer.recv() => match message {
                    Ok(m) => {
                        self.drop_revoked();
                        self.on_message(m.detach()).await?
                    }
                    Err(e) => {
                        warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            if let Some(failed) = lock(&self.shared.failed).take() {
                return Err(RuntimeError::Fatal(failed));
            }
            if let Some(txn) = &self.txn {
                if txn.due(self.config.commit_interval) {
                    commit_blocking(txn, consumer)?;
                }
            }
        }
    }

    /// Interactive query: the value under `key` in any partition this instance owns.
    fn answer(&self, (key, reply): StateQuery) {
        let found = self
            .stores
            .iter()
            .filter(|(p, _)| self.shared.owns(**p))
            .find_map(|(_, store)| store.get(&key))
            .and_then(|v| serde_json::to_value(v).ok());
        let _ = reply.send(found);
    }

    async fn on_message(&mut self, message: OwnedMessage) -> Result<(), RuntimeError> {
        let topic = message.topic().to_string();
        let partition = message.partition();
        self.metrics.records_in.with_label_values(&[&topic]).inc();
        self.metrics
            .observe_age(&topic, message.timestamp().to_millis());
        let source = Source {
            topic: topic.clone(),
            partition,
            offset: message.offset(),
        };
        if self.changelog.is_some() {
            self.ensure_store(partition).await?;
            if self.stores[&partition].already_applied(&topic, message.offset()) {
                // Its outputs were acknowledged before its state was written: nothing to redo.
                return self
                    .hand_off(Some(source), Vec::new(), Vec::new(), None)
                    .await;
            }
        }
        if let Some(at) = not_before(&message) {
            // Sequential: the deferral holds up this instance (pipelined processors do not).
            let wait = Duration::from_millis(u64::try_from(at - now_millis()).unwrap_or(0));
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let started = Instant::now();
        let (outputs, effects) = match self.handle_with_retries(&message).await? {
            Handled::Done { outputs, effects } => (outputs, effects),
            Handled::Abandoned => return Ok(()),
        };
        self.metrics
            .processing_seconds
            .with_label_values(&[&topic])
            .observe(started.elapsed().as_secs_f64());
        let awaits = self.changelog.is_some().then_some(partition);
        self.hand_off(Some(source), outputs, effects, awaits)
            .await?;
        self.flush_if_due(partition).await
    }

    /// Sends outputs to the producer and passes their deliveries on, in order. `awaits`: the
    /// store partition whose next changelog batch must be written before the record's offset
    /// may be committed (its state effects are in memory only until then).
    async fn hand_off(
        &mut self,
        source: Option<Source>,
        outputs: Vec<OutRecord>,
        effects: Vec<crate::processor::Effect>,
        awaits: Option<i32>,
    ) -> Result<(), RuntimeError> {
        if let Some(txn) = &self.txn {
            // Inside the transaction: commit_transaction flushes and fails on any failed
            // delivery, so the futures need no awaiting here. State batches follow at once
            // (`flush_if_due` flushes every record in this mode).
            txn.begin()?;
            for record in &outputs {
                produce(&self.producer, record).await?;
            }
            for effect in effects {
                effect.await.map_err(RuntimeError::Effect)?;
            }
            if let Some(source) = source {
                txn.record(&source.topic, source.partition, source.offset);
            }
            return Ok(());
        }
        let mut deliveries = Vec::with_capacity(outputs.len());
        for record in outputs {
            deliveries.push((
                record.topic.clone(),
                produce(&self.producer, &record).await?,
            ));
        }
        if source.is_some() {
            self.metrics.in_flight.inc();
        }
        self.pending
            .send(Pending::Record {
                source,
                deliveries,
                effects,
                awaits,
            })
            .await
            .map_err(|_| RuntimeError::Fatal("acker stopped".into()))
    }

    /// Writes partition `p`'s batch now if the interval is zero, in exactly-once mode, or when
    /// many keys wait; otherwise the flush tick writes it.
    async fn flush_if_due(&mut self, partition: i32) -> Result<(), RuntimeError> {
        let due = self.txn.is_some()
            || self.config.state_flush_interval.is_zero()
            || self
                .unflushed
                .get(&partition)
                .is_some_and(|u| u.dirty.len() >= FLUSH_KEYS);
        if due {
            self.flush(partition).await?;
        }
        Ok(())
    }

    /// Writes every partition's unflushed changes.
    async fn flush_all(&mut self) -> Result<(), RuntimeError> {
        let partitions: Vec<i32> = self.unflushed.keys().copied().collect();
        for partition in partitions {
            self.flush(partition).await?;
        }
        Ok(())
    }

    /// Hands partition `p`'s changes since its last batch to the acker as one changelog
    /// batch (produced after every earlier record's outputs are acknowledged), and a
    /// snapshot of the store when one is due.
    async fn flush(&mut self, partition: i32) -> Result<(), RuntimeError> {
        let Some(unflushed) = self.unflushed.remove(&partition) else {
            return Ok(());
        };
        if unflushed.dirty.is_empty() && !unflushed.applied_moved {
            return Ok(());
        }
        let (Some(topic), Some(store)) = (&self.changelog, self.stores.get(&partition)) else {
            return Ok(());
        };
        self.batches += 1;
        let batch_id = format!("{}:{}", self.generation, self.batches);
        let batch = state::changelog_batch(store, &unflushed.dirty, &batch_id)
            .map_err(|e| RuntimeError::Fatal(format!("state value does not serialize: {e}")))?;
        let records: Vec<OutRecord> = batch
            .into_iter()
            .map(|r| OutRecord {
                topic: topic.clone(),
                partition: Some(partition),
                headers: r.headers,
                key: Some(r.key.into_bytes()),
                payload: r.value,
            })
            .collect();
        let written = records.len() as u64;
        self.metrics.changelog_records.inc_by(written);
        if let Some(txn) = &self.txn {
            for record in &records {
                produce(&self.producer, record).await?;
            }
            let _ = txn;
            return Ok(());
        }
        self.pending
            .send(Pending::Changelog { partition, records })
            .await
            .map_err(|_| RuntimeError::Fatal("acker stopped".into()))?;
        self.snapshot_if_due(partition, written).await
    }

    /// After a batch: hands a copy of the store (values are shared, so this is cheap) to the
    /// committer, which writes it once that batch is acknowledged, when
    /// `snapshot_interval` passed or `snapshot_records` were written since the last one.
    async fn snapshot_if_due(&mut self, partition: i32, written: u64) -> Result<(), RuntimeError> {
        let now = Instant::now();
        let (since, count) = self.snapshots.entry(partition).or_insert((now, 0));
        *count += written;
        let due = *count >= self.config.snapshot_records
            || (since.elapsed() >= self.config.snapshot_interval && *count > 0);
        if !due {
            return Ok(());
        }
        *since = now;
        *count = 0;
        let Some(store) = self.stores.get(&partition) else {
            return Ok(());
        };
        let copy = store.clone();
        let path = state_io::snapshot_path(&self.config, P::STORE, partition);
        let metrics = self.metrics.clone();
        let write: acker::SnapshotWrite = Box::new(move |end: i64| {
            let mut copy = copy;
            copy.changelog_next = end;
            let started = Instant::now();
            match state::write_snapshot(&path, &copy) {
                Ok(()) => {
                    metrics.snapshots.inc();
                    info!(partition, keys = copy.len(), end, seconds = started.elapsed().as_secs_f64(), path = %path.display(), "periodic snapshot written");
                }
                Err(e) => warn!(partition, error = %e, "snapshot not written"),
            }
        });
        self.pending
            .send(Pending::Snapshot { partition, write })
            .await
            .map_err(|_| RuntimeError::Fatal("acker stopped".into()))
    }

    /// Drops the in-memory store of every partition this member no longer owns (or must
    /// verify again) while it holds unflushed changes: those changes' records were not
    /// committed, so the partition's next owner, maybe this member again, restores the
    /// changelog and handles them again.
    fn drop_revoked(&mut self) {
        if self.unflushed.is_empty() {
            return;
        }
        let gone: Vec<i32> = self
            .unflushed
            .keys()
            .copied()
            .filter(|p| !self.shared.owns(*p) || lock(&self.shared.stale).contains(p))
            .collect();
        for partition in gone {
            self.unflushed.remove(&partition);
            self.stores.remove(&partition);
            info!(
                partition,
                "unflushed state of a revoked partition dropped; its records will be handled again"
            );
        }
    }

    /// Makes the partition's store current: restored from snapshot and changelog on first
    /// use, caught up with the changelog's tail after a rebalance assigned it again.
    async fn ensure_store(&mut self, partition: i32) -> Result<(), RuntimeError> {
        let stale = lock(&self.shared.stale).contains(&partition);
        if self.stores.contains_key(&partition) && !stale {
            return Ok(());
        }
        let Some(topic) = self.changelog.clone() else {
            return Ok(());
        };
        let bootstrap = self.config.stack.bootstrap_servers.clone();
        let kept = self.stores.remove(&partition).map(|mut store| {
            // Everything this member handed off was flushed before the revoke, so the store
            // equals the log up to what the committer saw acknowledged.
            if let Some(end) = self.shared.changelog_end(partition) {
                store.changelog_next = store.changelog_next.max(end);
            }
            store
        });
        let path = state_io::snapshot_path(&self.config, P::STORE, partition);
        let base = move |end: i64| {
            kept.unwrap_or_else(|| state::read_snapshot(&path, end).unwrap_or_default())
        };
        let restored = tokio::task::spawn_blocking(move || {
            state_io::restore(&bootstrap, &topic, partition, base)
        })
        .await
        .map_err(|e| RuntimeError::Fatal(e.to_string()))??;
        let from = restored.from;
        self.metrics.restored_records.inc_by(restored.records);
        if restored.records > 0 || from == 0 {
            info!(
                partition,
                from,
                records = restored.records,
                keys = restored.store.len(),
                seconds = restored.elapsed.as_secs_f64(),
                "state restored"
            );
        }
        self.stores.insert(partition, restored.store);
        lock(&self.shared.stale).remove(&partition);
        Ok(())
    }

    /// Fires every due timer of every owned partition, one at a time.
    async fn fire_due_timers(&mut self) -> Result<(), RuntimeError> {
        let now = now_millis();
        let owned: Vec<i32> = lock(&self.shared.owned).iter().copied().collect();
        // A bounded batch per tick: after a restart thousands may be overdue, and input
        // records (their answers, often) must keep flowing in between.
        let mut budget = TIMERS_PER_TICK;
        for partition in owned {
            self.ensure_store(partition).await?;
            while let Some(timer) = self.stores.get(&partition).and_then(|s| s.next_due(now)) {
                if budget == 0 {
                    return Ok(());
                }
                budget -= 1;
                let Driver {
                    stores,
                    processor,
                    codecs,
                    ..
                } = self;
                let Some(store) = stores.get_mut(&partition) else {
                    break;
                };
                let step::Applied {
                    records,
                    effects,
                    dirty,
                } = match step::fire(processor, store, codecs, &timer).await {
                    Ok(applied) => applied,
                    Err(e) => {
                        warn!(partition, key = %timer.key, error = %crate::error_chain(&e), "timer handler failed; will retry");
                        self.metrics.failures.with_label_values(&["timer"]).inc();
                        break;
                    }
                };
                self.record_changes(partition, dirty, None);
                self.metrics.timers_fired.inc();
                self.hand_off(None, records, effects, None).await?;
                self.flush_if_due(partition).await?;
            }
        }
        Ok(())
    }

    /// Notes what a handled record (or timer) changed in store partition `partition`, and
    /// the input offset it applied, for the partition's next changelog batch.
    fn record_changes(
        &mut self,
        partition: i32,
        dirty: std::collections::BTreeSet<String>,
        applied: Option<(&str, i64)>,
    ) {
        if self.changelog.is_none() {
            return;
        }
        let Some(store) = self.stores.get_mut(&partition) else {
            return;
        };
        let unflushed = self.unflushed.entry(partition).or_default();
        if let Some((input, offset)) = applied {
            store.mark_applied(input, offset);
            unflushed.applied_moved = true;
        }
        unflushed.dirty.extend(dirty);
    }

    /// Decodes and handles one record, retrying as the policy says; a record the policy
    /// gives up on becomes a dead-letter output instead.
    async fn handle_with_retries(
        &mut self,
        message: &OwnedMessage,
    ) -> Result<Handled, RuntimeError> {
        let mut attempts = Attempts::new(message);
        loop {
            let failure = match self.try_handle(message).await {
                Ok(done) => return Ok(done),
                Err(failure) => failure,
            };
            match attempts.failed(failure, &self.config, &self.codecs, &self.metrics)? {
                Next::Retry(delay) => {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(Handled::Abandoned),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Next::DeadLetter(record) => {
                    // The applied offset only: a dead-lettered record changed no state.
                    self.record_changes(
                        message.partition(),
                        Default::default(),
                        Some((message.topic(), message.offset())),
                    );
                    return Ok(Handled::Done {
                        outputs: vec![record],
                        effects: Vec::new(),
                    });
                }
            }
        }
    }

    async fn try_handle(&mut self, message: &OwnedMessage) -> Result<Handled, Failure> {
        let topic = message.topic();
        let input = decode_input(&self.formats, &self.codecs, message).await?;
        let Driver {
            stores,
            processor,
            codecs,
            ..
        } = self;
        let mut scratch = PartitionStore::default();
        let store = stores.get_mut(&input.partition).unwrap_or(&mut scratch);
        let step::Applied {
            records,
            effects,
            dirty,
        } = step::handle(processor, store, codecs, &input)
            .await
            .map_err(Failure::Handler)?;
        self.record_changes(input.partition, dirty, Some((topic, input.offset)));
        Ok(Handled::Done {
            outputs: records,
            effects,
        })
    }
}

/// The processor's view of one record: its value decoded by the topic's format.
pub(crate) async fn decode_input(
    formats: &HashMap<String, ValueFormat>,
    codecs: &HashMap<String, TopicCodec>,
    message: &OwnedMessage,
) -> Result<Input, Failure> {
    let topic = message.topic();
    let value = step::decode_value(
        topic,
        formats.get(topic).copied(),
        codecs.get(topic),
        message.payload(),
    )
    .await
    .map_err(Failure::Decode)?;
    Ok(Input {
        topic: topic.to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value,
        timestamp_ms: message.timestamp().to_millis(),
        headers: message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The `sf.not-before` header of a record (see [`crate::headers::NOT_BEFORE`]), if any.
pub(crate) fn not_before(message: &OwnedMessage) -> Option<i64> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == crate::headers::NOT_BEFORE)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The dead letter for `message` after `failure` (its bytes, coordinates and reason).
pub(crate) fn dead_letter(
    config: &RuntimeConfig,
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
        processor: config.processor.clone(),
        consumer_group: config.group.clone(),
        error_kind: kind,
        reason: failure.to_string(),
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        failed_at: now_millis(),
        headers,
    }
}

/// Encodes `letter` for the dead-letter topic of input `source`.
pub(crate) fn dead_letter_record(
    config: &RuntimeConfig,
    codecs: &HashMap<String, TopicCodec>,
    metrics: &Metrics,
    source: &str,
    letter: DeadLetter,
) -> Result<OutRecord, RuntimeError> {
    let topic = config
        .dead_letter_for(source)
        .ok_or_else(|| RuntimeError::Config(format!("no dead-letter topic for `{source}`")))?;
    let codec = codecs.get(topic).ok_or_else(|| {
        RuntimeError::Config(format!("dead-letter topic `{topic}` has no Avro codec"))
    })?;
    let payload = codec.encode(&letter)?;
    metrics
        .dead_lettered
        .with_label_values(&[topic, letter.error_kind.as_str()])
        .inc();
    Ok(OutRecord {
        topic: topic.to_string(),
        partition: None,
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
pub(crate) async fn produce(
    producer: &FutureProducer,
    record: &OutRecord,
) -> Result<DeliveryFuture, RuntimeError> {
    let mut headers = OwnedHeaders::new();
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    loop {
        let mut future = FutureRecord::to(&record.topic);
        if !record.headers.is_empty() {
            future = future.headers(headers.clone());
        }
        if let Some(partition) = record.partition {
            future = future.partition(partition);
        }
        if let Some(key) = &record.key {
            future = future.key(key);
        }
        if let Some(payload) = &record.payload {
            future = future.payload(payload);
        }
        match producer.send_result(future) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}
