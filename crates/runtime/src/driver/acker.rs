//! After the driver: two pipelined stages that turn handed-off records into commits.
//!
//! 1. The *acker* awaits each record's output deliveries, in order, then produces the
//!    record's changelog batch (state changes are written only once the outputs they
//!    caused are acknowledged: a crash in between re-runs the record, whose state effects
//!    are not yet in the log) and passes the changelog deliveries on.
//! 2. The *committer* awaits those, advances the partition's known changelog end, marks the
//!    input offset done, and commits done offsets every interval and at the end. It is the
//!    single writer of the done-offsets map and the only committer, so a commit never runs
//!    ahead of acknowledged outputs or state.
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

pub enum Pending {
    Record {
        source: Option<Source>,
        deliveries: Vec<(String, DeliveryFuture)>,
        changelog: Vec<OutRecord>,
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
        changelog: Vec<DeliveryFuture>,
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
                    changelog,
                } => {
                    for (topic, delivery) in deliveries {
                        await_delivery(&topic, delivery).await?;
                        self.metrics.records_out.with_label_values(&[&topic]).inc();
                    }
                    let mut futures = Vec::with_capacity(changelog.len());
                    for record in changelog {
                        futures.push(produce(&self.producer, &record).await?);
                    }
                    Acked::Record {
                        source,
                        changelog: futures,
                    }
                }
                Pending::Deferred { source, outcome } => match outcome.await {
                    Ok(Deferred::Done(deliveries)) => {
                        for (topic, delivery) in deliveries {
                            await_delivery(&topic, delivery).await?;
                            self.metrics.records_out.with_label_values(&[&topic]).inc();
                        }
                        Acked::Record {
                            source: Some(source),
                            changelog: Vec::new(),
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
}

impl Committer {
    async fn run(mut self, mut acked: mpsc::Receiver<Acked>) -> Result<(), RuntimeError> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = acked.recv() => match item {
                    Some(Acked::Record { source, changelog }) => {
                        if let Err(e) = self.settle(source, changelog).await {
                            // Never commit past the failed record: stop and let the restart
                            // reprocess from the last commit.
                            self.fatal.cancel();
                            self.commit().await;
                            return Err(e);
                        }
                    }
                    Some(Acked::Hole(source)) => {
                        self.metrics.in_flight.dec();
                        lock(&self.shared.holes).insert((source.topic, source.partition));
                    }
                    Some(Acked::Flush(reply)) => {
                        self.commit().await;
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

    async fn settle(
        &mut self,
        source: Option<Source>,
        changelog: Vec<DeliveryFuture>,
    ) -> Result<(), RuntimeError> {
        for delivery in changelog {
            let (partition, offset) = await_delivery("changelog", delivery).await?;
            self.shared.advance_changelog(partition, offset + 1);
        }
        if let Some(source) = source {
            self.metrics.in_flight.dec();
            let key = (source.topic, source.partition);
            if !lock(&self.shared.holes).contains(&key) {
                self.done.insert(key, source.offset + 1);
            }
        }
        Ok(())
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
