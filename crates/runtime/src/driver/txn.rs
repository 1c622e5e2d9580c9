//! Exactly-once mode: Kafka transactions. Outputs, changelog batches and the input offsets
//! of everything handled since the last commit are committed atomically
//! (`send_offsets_to_transaction` with the consumer's group metadata, KIP-447), and every
//! reader (`read_committed`, the restore consumer included) sees all of it or none of it.
//!
//! A transaction spans one commit interval. It is also committed before partitions are
//! revoked (from the rebalance callback, while the driver waits in `recv`, so it holds whole
//! records only) and at shutdown. Any transactional error aborts and stops the process: the
//! restart's `init_transactions` fences this producer id, state is restored from the
//! committed changelog and input resumes at the committed offsets, so nothing half-done
//! survives. Only on brokers with transactions (Apache Kafka); nisshi refuses them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::lock;
use crate::RuntimeError;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Txn {
    producer: FutureProducer,
    inner: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    open: bool,
    since: Option<Instant>,
    /// Next offset per (topic, partition) handled inside the open transaction.
    offsets: HashMap<(String, i32), i64>,
}

impl Txn {
    /// Initialises transactions for this producer (fencing any earlier incarnation).
    pub fn init(producer: FutureProducer) -> Result<Self, RuntimeError> {
        producer.init_transactions(TIMEOUT)?;
        Ok(Self {
            producer,
            inner: Mutex::new(Open::default()),
        })
    }

    /// Opens a transaction unless one is open.
    pub fn begin(&self) -> Result<(), RuntimeError> {
        let mut inner = lock(&self.inner);
        if !inner.open {
            self.producer.begin_transaction()?;
            inner.open = true;
            inner.since = Some(Instant::now());
        }
        Ok(())
    }

    pub fn record(&self, topic: &str, partition: i32, offset: i64) {
        lock(&self.inner)
            .offsets
            .insert((topic.to_string(), partition), offset + 1);
    }

    pub fn due(&self, interval: Duration) -> bool {
        lock(&self.inner)
            .since
            .is_some_and(|since| since.elapsed() >= interval)
    }

    /// Commits the open transaction with its input offsets; aborts it on failure.
    pub fn commit(&self, group: Option<ConsumerGroupMetadata>) -> Result<(), RuntimeError> {
        let mut inner = lock(&self.inner);
        if !inner.open {
            return Ok(());
        }
        let result = self.commit_open(&inner.offsets, group);
        inner.open = false;
        inner.since = None;
        inner.offsets.clear();
        if let Err(e) = result {
            let _ = self.producer.abort_transaction(TIMEOUT);
            return Err(e);
        }
        Ok(())
    }

    fn commit_open(
        &self,
        offsets: &HashMap<(String, i32), i64>,
        group: Option<ConsumerGroupMetadata>,
    ) -> Result<(), RuntimeError> {
        if !offsets.is_empty() {
            let group = group.ok_or_else(|| {
                RuntimeError::Fatal("no consumer group metadata for the transaction".into())
            })?;
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
            self.producer
                .send_offsets_to_transaction(&tpl, &group, TIMEOUT)?;
        }
        self.producer.commit_transaction(TIMEOUT)?;
        Ok(())
    }

    /// Aborts the open transaction, if any (a handler asked to stop mid-transaction).
    pub fn abort(&self) {
        let mut inner = lock(&self.inner);
        if inner.open {
            match self.producer.abort_transaction(TIMEOUT) {
                Ok(()) => tracing::warn!("transaction aborted"),
                Err(e) => tracing::error!(error = %e, "transaction abort failed"),
            }
            inner.open = false;
            inner.since = None;
            inner.offsets.clear();
        }
    }
}
