//! The acker: waits for each record's deliveries, in order, then marks its offset as done;
//! commits done offsets periodically and once more at shutdown. Single writer of the
//! acknowledged-offsets map and the only committer, so commits can never run ahead of
//! acknowledged outputs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::context::TrackingContext;
use crate::{Metrics, RuntimeError};

pub struct Pending {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub deliveries: Vec<(String, DeliveryFuture)>,
}

pub struct Acker {
    consumer: Arc<StreamConsumer<TrackingContext>>,
    metrics: Metrics,
    interval: Duration,
    /// Cancelled when an output could not be delivered: the driver must stop taking input.
    fatal: CancellationToken,
    /// Next offset to commit per (topic, partition): last acknowledged record + 1.
    done: HashMap<(String, i32), i64>,
}

impl Acker {
    pub fn new(
        consumer: Arc<StreamConsumer<TrackingContext>>,
        metrics: Metrics,
        interval: Duration,
        fatal: CancellationToken,
    ) -> Self {
        Self {
            consumer,
            metrics,
            interval,
            fatal,
            done: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut pending: mpsc::Receiver<Pending>) -> Result<(), RuntimeError> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = pending.recv() => match item {
                    Some(p) => {
                        if let Err(e) = self.acknowledge(p).await {
                            // Do not commit past the failed record; stop, and let the restart
                            // reprocess from the last commit.
                            self.fatal.cancel();
                            self.commit().await;
                            return Err(e);
                        }
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

    async fn acknowledge(&mut self, p: Pending) -> Result<(), RuntimeError> {
        self.metrics.in_flight.dec();
        for (topic, delivery) in p.deliveries {
            match delivery.await {
                Ok(Ok(_)) => self.metrics.records_out.with_label_values(&[&topic]).inc(),
                Ok(Err((e, _))) => {
                    return Err(RuntimeError::Delivery {
                        topic,
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(RuntimeError::Delivery {
                        topic,
                        reason: "producer dropped the delivery".into(),
                    })
                }
            }
        }
        self.done.insert((p.topic, p.partition), p.offset + 1);
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
