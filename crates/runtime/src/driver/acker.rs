//! After the driver: two pipelined stages that turn handed-off records into commits.
//!
//! 1. The *acker* awaits each record's output deliveries and deferred effects, in order, and
//!    produces each changelog batch when it reaches it: after the outputs of every record
//!    handed off before it are acknowledged (state changes are written only once the
//!    outputs they caused are: a crash in between re-runs those records, whose state
//!    effects are not yet in the log).
//! 2. The *committer* awaits the changelog deliveries, advances the partition's known
//!    changelog end, and marks input offsets done: a stateless record's once its outputs are
//!    acknowledged, a stateful record's once the batch that holds its state effects is (it
//!    waits for its store partition's next batch; so does every later record of that
//!    partition, which keeps offsets in order). It commits done offsets every interval and
//!    at the end, and writes periodic snapshots once the batch they follow is acknowledged
//!    (the snapshot then covers exactly the changelog up to that batch). It is the single
//!    writer of the done-offsets map and the only committer, so a commit never runs ahead of
//!    acknowledged outputs or state.
//!
//! A `Flush` marker travels the same path, so when the committer answers it, everything
//! handed off before it is acknowledged and committed (used before partitions are given up).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::context::{lock, Shared, TrackingContext};
use super::produce;
use crate::processor::OutRecord;
use crate::{Metrics, RuntimeError};

/// Input coordinates a handled record will commit.
#[derive(Debug, Clone)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Writes a snapshot given the changelog offset it covers (runs on a blocking thread).
pub type SnapshotWrite = Box<dyn FnOnce(i64) + Send>;

pub enum Pending {
    Record {
        source: Option<Source>,
        deliveries: Vec<(String, DeliveryFuture)>,
        effects: Vec<crate::processor::Effect>,
        /// The store partition whose next batch holds this record's state effects.
        awaits: Option<i32>,
    },
    /// A store partition's changelog batch, covering every record handed off before it.
    Changelog {
        partition: i32,
        records: Vec<OutRecord>,
    },
    /// A copy of a store taken right after its batch.
    Snapshot {
        partition: i32,
        write: SnapshotWrite,
    },
    /// A record handled off the driver (pipelined mode): its outcome arrives when its
    /// handler finishes; records are still settled in hand-off order.
    Deferred {
        source: Source,
        outcome: oneshot::Receiver<Deferred>,
    },
    Flush(oneshot::Sender<()>),
}

/// How a pipelined record's handling ended.
pub enum Deferred {
    /// Its outputs (dead letter included) were handed to the producer.
    Done(Vec<(String, DeliveryFuture)>),
    /// Shutdown or a revoke came first: it must not be committed, nor anything after it.
    Abandoned,
    Failed(RuntimeError),
}

enum Acked {
    Record {
        source: Option<Source>,
        awaits: Option<i32>,
    },
    Changelog {
        partition: i32,
        deliveries: Vec<DeliveryFuture>,
    },
    Snapshot {
        partition: i32,
        write: SnapshotWrite,
    },
    Hole(Source),
    Flush(oneshot::Sender<()>),
}

pub struct Acker {
    pub producer: FutureProducer,
    pub metrics: Metrics,
    pub fatal: CancellationToken,
}

impl Acker {
    pub async fn run(
        self,
        mut pending: mpsc::Receiver<Pending>,
        committer: Committer,
    ) -> Result<(), RuntimeError> {
        let (tx, rx) = mpsc::channel(pending.max_capacity());
        // Owner: this acker, which awaits it below (the channel closing ends it).
        let committer = tokio::spawn(committer.run(rx));
        let result = self.forward(&mut pending, tx).await;
        if result.is_err() {
            self.fatal.cancel();
        }
        let committed = committer
            .await
            .unwrap_or_else(|e| Err(RuntimeError::Fatal(format!("committer failed: {e}"))));
        result.and(committed)
    }

    async fn forward(
        &self,
        pending: &mut mpsc::Receiver<Pending>,
        tx: mpsc::Sender<Acked>,
    ) -> Result<(), RuntimeError> {
        while let Some(item) = pending.recv().await {
            let next = match item {
                Pending::Flush(reply) => Acked::Flush(reply),
                Pending::Record {
                    source,
                    deliveries,
                    effects,
                    awaits,
                } => {
                    for (topic, delivery) in deliveries {
                        await_delivery(&topic, delivery).await?;
                        self.metrics.records_out.with_label_values(&[&topic]).inc();
                    }
                    for effect in effects {
                        effect.await.map_err(RuntimeError::Effect)?;
                    }
                    Acked::Record { source, awaits }
                }
                Pending::Changelog { partition, records } => {
                    let mut deliveries = Vec::with_capacity(records.len());
                    for record in records {
                        deliveries.push(produce(&self.producer, &record).await?);
                    }
                    Acked::Changelog {
                        partition,
                        deliveries,
                    }
                }
                Pending::Snapshot { partition, write } => Acked::Snapshot { partition, write },
                Pending::Deferred { source, outcome } => match outcome.await {
                    Ok(Deferred::Done(deliveries)) => {
                        for (topic, delivery) in deliveries {
                            await_delivery(&topic, delivery).await?;
                            self.metrics.records_out.with_label_values(&[&topic]).inc();
                        }
                        Acked::Record {
                            source: Some(source),
                            awaits: None,
                        }
                    }
                    Ok(Deferred::Abandoned) => Acked::Hole(source),
                    Ok(Deferred::Failed(e)) => return Err(e),
                    Err(_) => {
                        return Err(RuntimeError::Fatal(
                            "a record's handler task ended without an outcome".into(),
                        ))
                    }
                },
            };
            if tx.send(next).await.is_err() {
                return Err(RuntimeError::Fatal("committer stopped".into()));
            }
        }
        Ok(())
    }
}

async fn await_delivery(topic: &str, delivery: DeliveryFuture) -> Result<(i32, i64), RuntimeError> {
    match delivery.await {
        Ok(Ok(delivered)) => Ok((delivered.partition, delivered.offset)),
        Ok(Err((e, _))) => Err(RuntimeError::Delivery {
            topic: topic.to_string(),
            reason: e.to_string(),
        }),
        Err(_) => Err(RuntimeError::Delivery {
            topic: topic.to_string(),
            reason: "producer dropped the delivery".into(),
        }),
    }
}

pub struct Committer {
    pub consumer: Arc<StreamConsumer<TrackingContext>>,
    pub metrics: Metrics,
    pub interval: Duration,
    pub fatal: CancellationToken,
    pub shared: Arc<Shared>,
    /// Next offset to commit per (topic, partition).
    pub done: HashMap<(String, i32), i64>,
    /// Per store partition, records acknowledged whose state awaits the next batch.
    pub waiting: HashMap<i32, Vec<Source>>,
}

impl Committer {
    async fn run(mut self, mut acked: mpsc::Receiver<Acked>) -> Result<(), RuntimeError> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = acked.recv() => match item {
                    Some(Acked::Record { source, awaits }) => self.settle(source, awaits),
                    Some(Acked::Changelog { partition, deliveries }) => {
                        if let Err(e) = self.settle_batch(partition, deliveries).await {
                            // Never commit past the failed batch: stop and let the restart
                            // reprocess from the last commit.
                            self.fatal.cancel();
                            self.commit().await;
                            return Err(e);
                        }
                    }
                    Some(Acked::Snapshot { partition, write }) => self.snapshot(partition, write),
                    Some(Acked::Hole(source)) => {
                        self.metrics.in_flight.dec();
                        lock(&self.shared.holes).insert((source.topic, source.partition));
                    }
                    Some(Acked::Flush(reply)) => {
                        self.commit().await;
                        self.forget_revoked();
                        let _ = reply.send(());
                    }
                    None => {
                        self.commit().await;
                        return Ok(());
                    }
                },
                _ = tick.tick() => self.commit().await,
            }
        }
    }

    /// A record's outputs (and effects) are acknowledged: done now, or once its store
    /// partition's next batch is (as is any record behind one that waits).
    fn settle(&mut self, source: Option<Source>, awaits: Option<i32>) {
        let Some(source) = source else { return };
        let partition = awaits.unwrap_or(source.partition);
        match self.waiting.get_mut(&partition) {
            Some(waiting) if awaits.is_some() || !waiting.is_empty() => waiting.push(source),
            _ if awaits.is_some() => {
                self.waiting.insert(partition, vec![source]);
            }
            _ => self.done_with(source),
        }
    }

    fn done_with(&mut self, source: Source) {
        self.metrics.in_flight.dec();
        let key = (source.topic, source.partition);
        if !lock(&self.shared.holes).contains(&key) {
            self.done.insert(key, source.offset + 1);
        }
    }

    /// A batch is acknowledged: the state of every record waiting on its partition is
    /// written, so they are done.
    async fn settle_batch(
        &mut self,
        partition: i32,
        deliveries: Vec<DeliveryFuture>,
    ) -> Result<(), RuntimeError> {
        for delivery in deliveries {
            let (p, offset) = await_delivery("changelog", delivery).await?;
            self.shared.advance_changelog(p, offset + 1);
        }
        for source in self.waiting.remove(&partition).unwrap_or_default() {
            self.done_with(source);
        }
        Ok(())
    }

    /// Writes a snapshot taken right after the partition's last batch, which is now
    /// acknowledged, at the changelog end that batch reached.
    fn snapshot(&mut self, partition: i32, write: SnapshotWrite) {
        if lock(&self.shared.stale).contains(&partition) || !self.shared.owns(partition) {
            return;
        }
        if let Some(end) = self.shared.changelog_end(partition) {
            tokio::task::spawn_blocking(move || write(end));
        }
    }

    /// Records waiting on partitions this member is giving up: their batch will never be written
    /// here (the driver drops such state); the next owner handles them again.
    fn forget_revoked(&mut self) {
        let revoking: std::collections::HashSet<i32> = lock(&self.shared.revoking)
            .iter()
            .map(|(_, p)| *p)
            .collect();
        let gone: Vec<i32> = self
            .waiting
            .keys()
            .copied()
            .filter(|p| revoking.contains(p) || !self.shared.owns(*p))
            .collect();
        for partition in gone {
            if let Some(waiting) = self.waiting.remove(&partition) {
                for _ in waiting {
                    self.metrics.in_flight.dec();
                }
            }
        }
    }

    /// Commits done offsets of partitions this member still owns. After a rebalance the new
    /// owner commits its own progress; a stale commit from here could move it backwards.
    async fn commit(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let owned = self.consumer.assignment().unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.done {
            if owned.find_partition(topic, *partition).is_some() {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
        }
        if tpl.count() == 0 {
            self.done.clear();
            return;
        }
        let consumer = self.consumer.clone();
        let started = Instant::now();
        let result =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        match result {
            Ok(Ok(())) => {
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.done.clear();
            }
            Ok(Err(e)) => warn!(error = %e, "offset commit failed; will retry"),
            Err(e) => error!(error = %e, "offset commit task failed"),
        }
    }
}
